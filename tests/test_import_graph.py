"""The dependency rule, checked on the source: which layer may import which, and no cycles.

gateway -> services -> models and policies; dispatch -> flows -> tasks -> services, notifications,
executors; nothing imports gateway (but the CLI, which serves it). Imports are read with `ast`
(inside functions too: a deferred import is still a dependency), and files are mapped to packages
through pyproject's package-dir, so a new folder shows up here as soon as it is installed.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The `itilflow` folder holds three layers: the core every package may use, the runtime that wires
# settings to the database, policies and mail, and the entry points that start everything.
# metrics and logs: in-memory counters and log formats, for every process (docs/observability.md).
ITILFLOW_CORE = {"__init__", "clock", "settings", "signing", "metrics", "logs"}
ITILFLOW_RUNTIME = {"runtime", "engine"}
# Everything else in itilflow/ (cli, stack, demo, commands, __main__) is the entry layer.

# Each layer and the layers it may import (besides itself). Lower layers come first.
BASE = {"itilflow.core"}
ALLOWED: dict[str, set[str]] = {
    "itilflow.core": set(),
    "models": BASE,
    "policies": BASE,
    "executors": BASE,
    # A change request validates its plan against the executors' schema (pure pydantic).
    "services": BASE | {"models", "policies", "executors"},
    # The message contexts (notifications/*_context.py) read the rules' views of a record.
    "notifications": BASE | {"models", "policies", "services"},
    "reports": BASE | {"models", "policies", "notifications"},
    "itilflow.runtime": BASE | {"models", "policies", "notifications"},
    "tasks": BASE
    | {"itilflow.runtime", "models", "policies", "services", "notifications", "executors"}
    | {"reports"},
    "flows": BASE
    | {"itilflow.runtime", "models", "policies", "services", "notifications", "executors"}
    | {"reports", "tasks"},
    "dispatch": BASE | {"itilflow.runtime", "models", "policies", "services", "flows"},
    "gateway": BASE
    | {"itilflow.runtime", "models", "policies", "services", "notifications", "executors"},
    "itilflow.entry": set(),  # filled below: the entry points may import every layer
}
ALLOWED["itilflow.entry"] = set(ALLOWED) - {"itilflow.entry"}

# Imports that break the rule today, each with why; this list may only shrink (a stale entry
# fails the test too). Empty is the goal.
ALLOW_LIST: dict[tuple[str, str], str] = {}


def package_dirs() -> dict[str, Path]:
    """Package name -> folder, as pyproject installs them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


def module_name(path: Path, dirs: dict[str, Path]) -> str:
    for package, folder in sorted(dirs.items(), key=lambda item: -len(str(item[1]))):
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([package, *parts])
    raise AssertionError(f"{path} is in no package of pyproject's package-dir")


def layer_of(module: str) -> str | None:
    """The layer a module `itilflow....` belongs to, None for modules outside the project."""
    parts = module.split(".")
    if parts[0] != "itilflow":
        return None
    if len(parts) == 1 or parts[1] in ITILFLOW_CORE:
        return "itilflow.core"
    if parts[1] in ITILFLOW_RUNTIME:
        return "itilflow.runtime"
    if parts[1] in ALLOWED:
        return parts[1]
    return "itilflow.entry"


def imported_modules(path: Path, module: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield source
            # `from itilflow import clock` imports the module itilflow.clock
            yield from (f"{source}.{alias.name}" for alias in node.names)


def layer_edges() -> dict[tuple[str, str], list[str]]:
    """(importing layer, imported layer) -> the files that make that edge."""
    dirs = package_dirs()
    edges: dict[tuple[str, str], list[str]] = {}
    for folder in set(dirs.values()):
        for path in sorted(folder.rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue
            module = module_name(path, dirs)
            source = layer_of(module)
            assert source is not None
            for imported in imported_modules(path, module):
                target = layer_of(imported)
                if target is None or target == source:
                    continue
                edges.setdefault((source, target), []).append(str(path.relative_to(ROOT)))
    return edges


def test_every_folder_maps_to_a_layer() -> None:
    for package in package_dirs():
        assert layer_of(package) is not None, package


def test_imports_follow_the_dependency_rule() -> None:
    broken = {
        edge: sorted(set(files))
        for edge, files in layer_edges().items()
        if edge[1] not in ALLOWED[edge[0]] and edge not in ALLOW_LIST
    }
    assert not broken, "imports against the rule (importer -> imported: files):\n" + "\n".join(
        f"  {source} -> {target}: {', '.join(files)}" for (source, target), files in broken.items()
    )


def test_the_allow_list_only_shrinks() -> None:
    edges = layer_edges()
    stale = [edge for edge in ALLOW_LIST if edge not in edges or edge[1] in ALLOWED[edge[0]]]
    assert not stale, f"no longer needed, remove from ALLOW_LIST: {stale}"


def test_nothing_imports_the_gateway_but_the_entry_points() -> None:
    importers = {source for source, target in layer_edges() if target == "gateway"}
    assert importers <= {"itilflow.entry"}, importers


def test_no_import_cycles_between_layers() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in layer_edges():
        graph.setdefault(source, set()).add(target)
    cycles = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
