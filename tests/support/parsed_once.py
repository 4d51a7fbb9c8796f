"""The policy folders and the demo data, parsed once per test session rather than once per test.

Nearly every test builds a runtime (tests/conftest.py's `rt`), which reads the policy folder
(about a dozen YAML files, parsed by PyYAML's pure-Python loader, then validated) and loads the
demo people (data.yaml): some 0.1-0.3 s a test on a quiet machine, minutes over the suite. The
result depends on nothing but the files' bytes (and the stack's URLs), so it is kept under a key
made of exactly those: a test that writes a policy file of its own gets it parsed; a folder that
fails to load raises every time (nothing is kept). The Policies are frozen pydantic models, so
sharing one between tests shares nothing a test can change. The demo data is handed out as a
deep copy.

tests/policies calls `itilflow.policies.load_policies` itself, which stays as it is: the modules
below get the cached one under the name they imported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from itilflow.demo import demo_data as parse_demo_data
from itilflow.policies import Policies, load_policies
from itilflow.policies.loader import default_policy_dir

# The modules that call load_policies for a runtime, an app or a form (`from ... import`).
CALLERS = ("itilflow.runtime", "itilflow.gateway.app", "itilflow.flows.form_choices")

_policies: dict[tuple[Any, ...], Policies] = {}


def _folder_contents(directory: Path | str | None) -> tuple[tuple[str, bytes], ...] | None:
    """Every file of the folder (and of the packaged defaults, which stand in for an optional
    file left out), by name and bytes; None when it is no folder (load_policies says so)."""
    contents: list[tuple[str, bytes]] = []
    for root in (default_policy_dir(), None if directory is None else Path(directory)):
        if root is None:
            continue
        if not root.is_dir():
            return None
        contents += sorted(
            (f"{root}/{entry.name}", entry.read_bytes())
            for entry in root.iterdir()
            if entry.is_file()
        )
    return tuple(contents)


def load_policies_once(
    directory: Path | str | None = None, *, stack_urls: Mapping[str, str] | None = None
) -> Policies:
    """load_policies, kept for the same files' bytes and stack URLs."""
    contents = _folder_contents(directory)
    if contents is None:
        return load_policies(directory, stack_urls=stack_urls)
    key = (str(directory), contents, tuple(sorted((stack_urls or {}).items())))
    if key not in _policies:
        _policies[key] = load_policies(directory, stack_urls=stack_urls)
    return _policies[key]


@cache
def _demo_data() -> dict:
    return parse_demo_data()


def demo_data_once() -> dict:
    """The demo's data.yaml, parsed once; a copy each time, which the caller may change."""
    return copy.deepcopy(_demo_data())


@contextmanager
def parsed_once() -> Iterator[None]:
    import importlib

    from itilflow import demo

    with pytest.MonkeyPatch.context() as patch:
        for name in CALLERS:
            patch.setattr(importlib.import_module(name), "load_policies", load_policies_once)
        patch.setattr(demo, "demo_data", demo_data_once)
        yield
