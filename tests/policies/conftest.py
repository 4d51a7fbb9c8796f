"""Fixtures for the policy tests: the packaged defaults, and a copy of them to break."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from itilflow.policies import Policies, default_policy_dir, load_policies
from itilflow.policies.loader import FILES

# Every file the loader reads, so a policy added later is copied too.
POLICY_FILES = tuple(filename.removesuffix(".yaml") for filename, _ in FILES.values())


@pytest.fixture(scope="session")
def defaults() -> Policies:
    return load_policies()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A writable copy of the default policy files."""
    target = tmp_path / "policies"
    target.mkdir()
    for name in POLICY_FILES:
        source = default_policy_dir().joinpath(f"{name}.yaml")
        (target / f"{name}.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return target


@pytest.fixture
def edit(policy_dir: Path) -> Callable[[str, str, str], None]:
    """Replace one exact piece of text in a copied policy file (fails if the text is absent)."""

    def replace(filename: str, old: str, new: str) -> None:
        path = policy_dir / filename
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {filename}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return replace
