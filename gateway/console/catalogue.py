"""The console's texts: YAML files, one per area and language, in messages/<language>/<area>.yaml,
loaded into one lookup per language.

A file holds a mapping (nested mappings allowed); its keys are prefixed with the file's name:
`incidents.yaml` holding `{actions: {acknowledge: Acknowledge}}` gives the key
`incidents.actions.acknowledge`.
A text may name values in braces (`"{count} incidents"`), filled by `t(key, count=3)`. A key missing
in a language falls back to English; a key missing in English is an error (a template's typo must
not become an empty button), unless the template gives a `default=` (for keys built from data,
such as a timeline entry's kind).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from itilflow.models.people import LANGUAGES

MESSAGES_DIR = Path(__file__).parent / "messages"
DEFAULT_LANGUAGE = "en"


class CatalogueError(ValueError):
    """A catalogue file that is not a mapping of texts, or a key no English file has."""


def _flatten(prefix: str, values: Any, where: Path, into: dict[str, str]) -> None:
    if isinstance(values, Mapping):
        for key, value in values.items():
            _flatten(f"{prefix}.{key}", value, where, into)
    elif isinstance(values, str):
        into[prefix] = values
    else:
        raise CatalogueError(f"{where}: {prefix}: expected a text or a mapping, got {values!r}")


@cache
def messages(language: str) -> dict[str, str]:
    """Every text of `language`, by key (English ones under keys the language lacks)."""
    found: dict[str, str] = {} if language == DEFAULT_LANGUAGE else dict(messages(DEFAULT_LANGUAGE))
    for path in sorted((MESSAGES_DIR / language).glob("*.yaml")):
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, Mapping):
            raise CatalogueError(f"{path}: expected a mapping of texts")
        _flatten(path.stem, values, path, found)
    return found


def translator(language: str) -> Callable[..., str]:
    """`t(key, **values)` for the templates, in `language`."""
    texts = messages(language if language in LANGUAGES else DEFAULT_LANGUAGE)

    def t(key: str, default: str | None = None, **values: Any) -> str:
        text = texts.get(key, default)
        if text is None:
            raise CatalogueError(f"no console text {key!r} in messages/en/*.yaml")
        return text.format_map(values) if values else text

    return t


def choose_language(person_language: str | None, accept_language: str | None) -> str:
    """The person's language from the directory, else the browser's first one we have, else
    English. "zh", "zh-CN", "zh-Hans" -> zh_CN."""
    if person_language in LANGUAGES:
        return person_language
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower().replace("_", "-")
        if tag.startswith("zh") and "tw" not in tag and "hk" not in tag and "hant" not in tag:
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


def texts(area: str, language: str) -> dict[str, str]:
    """The texts of one area (one YAML file's keys, without the area's prefix) in `language`:
    for a page that takes its texts as a mapping (`t.status`) rather than through `t(key)`."""
    prefix = f"{area}."
    found = messages(language if language in LANGUAGES else DEFAULT_LANGUAGE)
    return {key.removeprefix(prefix): text for key, text in found.items() if key.startswith(prefix)}
