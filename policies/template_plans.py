"""Where a template's `{{parameter}}` placeholders may stand in its plan, and how a checked value
goes in there: one shell word in a `command`, the text itself in an argv element, an env value, a
header or a body, percent-encoded in a `url`. Pure functions on the plan as YAML data (the policies
know the executors' shape only by its keys: backup, steps, verify, rollback_verify; do, undo).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from itilflow.policies._base import plain_list

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
SECTIONS = ("backup", "steps", "verify", "rollback_verify")

_Path = tuple[str | int, ...]


def plan_problems(plan: dict[str, Any], parameters: Collection[str]) -> list[tuple[_Path, str]]:
    """What is wrong with a template's plan: its shape, unknown placeholders, and placeholders
    where a value could be read as code or is not meant to go."""
    problems = list(_shape_problems(plan))
    for path, text, how in _strings(plan):
        for match in PLACEHOLDER.finditer(text):
            name = match.group(1)
            if name not in parameters:
                declared = plain_list(sorted(parameters)) or "none"
                problems.append((path, f"unknown parameter {{{{{name}}}}}; declared: {declared}"))
            elif how is None:
                problems.append(
                    (
                        path,
                        "parameters may be used only in a shell command, argv or env value, "
                        "or an HTTP url, header or body",
                    )
                )
        if how == "command" and (quoted := _placeholder_in_quotes(text)):
            problems.append(
                (
                    path,
                    f"{quoted} is inside quotes: write it bare, its value is quoted for the shell",
                )
            )
    problems.extend(_shell_scripts_with_parameters(plan))
    return problems


def _shape_problems(plan: dict[str, Any]) -> Iterator[tuple[_Path, str]]:
    for key in plan:
        if key not in SECTIONS:
            yield (key,), f"unknown key {key!r}; expected one of {plain_list(SECTIONS)}"
    if not isinstance(plan.get("steps"), list) or not plan["steps"]:
        yield ("steps",), "expected a list of at least one step"
    for section in SECTIONS:
        items = plan.get(section, [])
        if not isinstance(items, list):
            yield (section,), "expected a list"
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("do"), dict):
                yield (section, index), "expected a mapping with a name and `do` (an action)"


def _strings(plan: Any) -> Iterator[tuple[_Path, str, str | None]]:
    """Every string of the plan with its path and how a value goes in (None: not allowed)."""
    for path, action in _actions(plan):
        kind = action.get("kind", "shell")
        for key, value in action.items():
            how = _POSITIONS.get((kind, key))
            yield from _leaves((*path, key), value, how)
    for path, text in _leaves_outside_actions(plan):
        yield path, text, None


def _actions(plan: Any) -> Iterator[tuple[_Path, dict[str, Any]]]:
    if not isinstance(plan, dict):
        return
    for section in SECTIONS:
        items = plan.get(section)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            for key in ("do", "undo"):
                if isinstance(item.get(key), dict):
                    yield (section, index, key), item[key]


def _leaves(path: _Path, value: Any, how: str | None) -> Iterator[tuple[_Path, str, str | None]]:
    if isinstance(value, str):
        yield path, value, how
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves((*path, key), item, how)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves((*path, index), item, how)


def _leaves_outside_actions(plan: Any) -> Iterator[tuple[_Path, str]]:
    """Strings that are not inside an action (step names, unknown keys)."""
    if not isinstance(plan, dict):
        return
    for section, items in plan.items():
        if not isinstance(items, list):
            yield from ((p, t) for p, t, _ in _leaves((section,), items, None))
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                yield from ((p, t) for p, t, _ in _leaves((section, index), item, None))
                continue
            for key, value in item.items():
                if key in ("do", "undo") and isinstance(value, dict):
                    continue
                yield from ((p, t) for p, t, _ in _leaves((section, index, key), value, None))


_POSITIONS: dict[tuple[str, str], str] = {
    ("shell", "command"): "command",
    ("shell", "argv"): "text",
    ("shell", "env"): "text",
    ("http", "url"): "url",
    ("http", "headers"): "text",
    ("http", "body"): "text",
    ("http", "json"): "text",
}
_PUT_IN: dict[str, Callable[[str], str]] = {
    "command": shlex.quote,
    "text": lambda value: value,
    "url": lambda value: quote(value, safe=""),
}


def substituted(plan: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The plan with each placeholder replaced by its checked value, put in as its place says."""

    def fill(value: Any, how: str | None) -> Any:
        if isinstance(value, str) and how is not None:
            put_in = _PUT_IN[how]
            return PLACEHOLDER.sub(lambda m: put_in(str(values[m.group(1)])), value)
        if isinstance(value, dict):
            return {key: fill(item, how) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item, how) for item in value]
        return value

    built: dict[str, Any] = {}
    for section, items in plan.items():
        if not isinstance(items, list):
            built[section] = items
            continue
        built[section] = []
        for item in items:
            item = dict(item)
            for key in ("do", "undo"):
                action = item.get(key)
                if isinstance(action, dict):
                    kind = action.get("kind", "shell")
                    filled = {k: fill(v, _POSITIONS.get((kind, k))) for k, v in action.items()}
                    item[key] = {"kind": kind, **filled}
            built[section].append(item)
    return built


def _placeholder_in_quotes(command: str) -> str | None:
    """The first placeholder that stands inside single or double quotes of a shell command."""
    quote_char: str | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if char == "\\" and quote_char != "'":
            index += 2
            continue
        if quote_char is None and char in "'\"":
            quote_char = char
        elif char == quote_char:
            quote_char = None
        elif quote_char is not None and (match := PLACEHOLDER.match(command, index)):
            return match.group(0)
        index += 1
    return None


def _shell_scripts_with_parameters(plan: dict[str, Any]) -> Iterator[tuple[_Path, str]]:
    """argv that hands a script with a placeholder to a shell (`sh -c "...{{x}}"`): the value
    would be read as shell code. Such a step must use `command`, where values are quoted."""
    for path, action in _actions(plan):
        argv = action.get("argv")
        if action.get("kind", "shell") != "shell" or not isinstance(argv, list) or not argv:
            continue
        program = str(argv[0]).rsplit("/", 1)[-1]
        if program not in SHELLS:
            continue
        for index, element in enumerate(argv[1:], start=1):
            if isinstance(element, str) and PLACEHOLDER.search(element):
                yield (
                    (*path, "argv", index),
                    f"a parameter in the arguments of the shell {program!r} could be run as "
                    "code: use `command` (values are quoted) or run the program directly",
                )
