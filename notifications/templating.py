"""The one way a template environment is made: for notifications, the gateway's pages and the
reports.

Sandboxed and immutable (a template can neither reach Python internals nor change the values it
is given), every `.html` template autoescaped, undefined names an error rather than an empty
string, and blocks trimmed so text output looks written. Each user passes its own folder, and
adds its own filters and globals to the environment it gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment


def template_environment(
    template_dir: Path, *, finalize: Callable[..., Any] | None = None
) -> ImmutableSandboxedEnvironment:
    """An environment loading `template_dir`; `.html` files are escaped, others are not."""
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(template_dir),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
