"""Problem tests: a policy folder to vary, on top of the shared fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from itilflow.policies import Policies, default_policy_dir, load_policies
from itilflow.policies.loader import FILES


@pytest.fixture
def policy_with(tmp_path: Path) -> Callable[[str, str], Policies]:
    """The default policies with one exact piece of problem.yaml replaced."""

    def replace(old: str, new: str) -> Policies:
        folder = tmp_path / "policies"
        folder.mkdir(exist_ok=True)
        for filename, _ in FILES.values():
            text = default_policy_dir().joinpath(filename).read_text(encoding="utf-8")
            if filename == "problem.yaml":
                assert old in text, f"{old!r} not in problem.yaml"
                text = text.replace(old, new, 1)
            (folder / filename).write_text(text, encoding="utf-8")
        return load_policies(folder)

    return replace
