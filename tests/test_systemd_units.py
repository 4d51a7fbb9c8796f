"""deploy/systemd/: the units pass `systemd-analyze verify`, and each ExecStart is a command
of our CLI (a unit naming a command that does not exist would fail only on the host)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from itilflow.cli import build_parser

PROJECT = Path(__file__).resolve().parent.parent
UNITS = PROJECT / "deploy" / "systemd"
INSTALLED = "/opt/itilflow"  # where the units expect the checkout (docs/operations.md)
# Exponential restart back-off: ignored (with a warning) by systemd before 254 (Debian 12 has
# 252), which then restarts every RestartSec.
NEWER_KEYS = re.compile(r": Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\]")
SERVICES = [
    "itilflow-prefect-server.service",
    "itilflow-runner.service",
    "itilflow-mail-intake.service",
    "itilflow-gateway.service",
    "itilflow-worker@.service",
    "itilflow-setup.service",
]
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.target"))


def installed_here(folder: Path) -> list[Path]:
    """The units as installed from this checkout (its .venv in place of /opt/itilflow's), and
    worker 1 of the template, in `folder`."""
    copies = []
    for unit in unit_files():
        copy = folder / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, str(PROJECT)))
        copies.append(copy)
    worker = folder / "itilflow-worker@1.service"
    worker.write_text((folder / "itilflow-worker@.service").read_text())
    return [*copies, worker]


def verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        cwd=units[0].parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_one_unit_per_process_with_hardening_and_restarts() -> None:
    assert [unit.name for unit in unit_files()] == sorted(SERVICES) + ["itilflow.target"]
    for name in SERVICES:
        text = (UNITS / name).read_text()
        for line in (
            "EnvironmentFile=/etc/itilflow/itilflow.env",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "Restart=on-failure",
            "User=itilflow",
        ):
            assert line in text.splitlines(), f"{name}: no {line}"


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    result = verify(installed_here(tmp_path))
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0, said
    assert [line for line in said if not NEWER_KEYS.search(line)] == []


@needs_systemd_analyze
def test_verify_would_catch_a_unit_whose_command_is_missing(tmp_path: Path) -> None:
    """The check above is not blind: a unit whose ExecStart is not there fails it."""
    units = installed_here(tmp_path)
    runner = tmp_path / "itilflow-runner.service"
    runner.write_text(runner.read_text().replace(".venv/bin/itilflow", ".venv/bin/no-such"))
    result = verify(units)
    assert result.returncode != 0
    assert "no-such" in result.stdout + result.stderr


def exec_starts(unit: Path) -> list[list[str]]:
    commands = []
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            commands.append(shlex.split(line.removeprefix("ExecStart=").replace("%i", "1")))
    return commands


@pytest.mark.parametrize("name", SERVICES)
def test_every_exec_start_is_a_command_of_our_cli(name: str) -> None:
    commands = exec_starts(UNITS / name)
    assert commands, f"{name} has no ExecStart"
    for command in commands:
        assert command[0] == f"{INSTALLED}/.venv/bin/itilflow", command
        args = build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown one
        assert callable(args.run)


def test_an_unknown_command_is_refused_by_that_check() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prefect-servers"])
