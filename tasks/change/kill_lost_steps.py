"""Kill the step processes a lost run left running, and say so on the change's timeline.

A shell step runs in a session of its own, so a run (or a whole stack) killed mid-step leaves
it running as an orphan that finishes its work behind the rollback's back. Each step's process
group is kept on disk while it runs (executors/processes.py); this finds what is left there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import task
from sqlmodel import col, select

from itilflow.executors import ProcessLedger, StepProcess
from itilflow.executors.processes import forget, kill_group, recorded
from itilflow.models import Change, add_change_entry, session_scope
from itilflow.runtime import Runtime, runtime
from itilflow.services import changes


def steps_folder(rt: Runtime) -> Path:
    """Where this host keeps the process groups of the steps running on it."""
    return rt.settings.data_dir.resolve() / "steps"


def step_ledger(rt: Runtime, change_id: int, run_id: str, phase: str, name: str) -> ProcessLedger:
    return ProcessLedger(steps_folder(rt), change_id, run_id, phase, name)


@task(name="kill-lost-steps")
def kill_lost_steps(change_id: int, lost_run_id: str, why: str | None = None) -> list[str]:
    """Kill what the lost run's steps left running on this host, before the rollback undoes
    them (an orphan would go on writing after its undo); the groups killed, described. Called
    by `recover-change`, and by the runner (with `why`) as soon as it finds the run lost."""
    return kill_recorded(
        lambda record: record.change_id == change_id and record.run_id == lost_run_id,
        actor="runner" if why else "flow:recover-change",
        why=why,
    )


def kill_orphan_steps(rt: Runtime | None = None) -> list[str]:
    """Kill every recorded step whose run no longer owns its change (taken over by a recovery,
    or the change closed): its run was declared lost, so nothing may act for it any more."""
    rt = rt or runtime()
    records = recorded(steps_folder(rt))
    if not records:
        return []
    ids = {record.change_id for record in records}
    with session_scope(rt.engine) as session:
        owners = {
            change.id: change.flow_run_id
            for change in session.exec(select(Change).where(col(Change.id).in_(ids))).all()
            if change.status in changes.MID_IMPLEMENTATION
        }
    return kill_recorded(
        lambda record: owners.get(record.change_id) != record.run_id,
        actor="runner",
        rt=rt,
    )


def kill_recorded(
    chosen: Callable[[StepProcess], bool],
    *,
    actor: str,
    why: str | None = None,
    rt: Runtime | None = None,
) -> list[str]:
    """Kill the chosen recorded groups still running, forget all the chosen ones, and write
    one timeline entry a change: which step's group was killed, or was already gone."""
    rt = rt or runtime()
    folder = steps_folder(rt)
    by_change: dict[int, tuple[list[StepProcess], list[StepProcess]]] = {}
    for record in recorded(folder):
        if not chosen(record):
            continue
        killed, gone = by_change.setdefault(record.change_id, ([], []))
        (killed if kill_group(record) else gone).append(record)
        forget(folder, record)
    if not by_change:
        return []
    with session_scope(rt.engine) as session:
        for change_id, (killed, gone) in by_change.items():
            if session.get(Change, change_id) is None:
                continue
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="step_processes_killed",
                actor=actor,
                message=(f"{why}: " if why else "") + _message(killed, gone),
                data={
                    "killed": [_data(record) for record in killed],
                    "already_gone": [_data(record) for record in gone],
                },
            )
    return [record.describe() for killed, _ in by_change.values() for record in killed]


def _message(killed: list[StepProcess], gone: list[StepProcess]) -> str:
    parts = []
    if killed:
        runs = ", ".join(sorted({record.run_id for record in killed}))
        parts.append(
            f"killed what the lost run {runs} left running: "
            + "; ".join(record.describe() for record in killed)
        )
    if gone:
        parts.append("no longer running: " + "; ".join(record.describe() for record in gone))
    return ". ".join(parts)


def _data(record: StepProcess) -> dict[str, object]:
    return {
        "pgid": record.pgid,
        "host": record.host,
        "run_id": record.run_id,
        "phase": record.phase,
        "name": record.name,
        "started_at": record.started_at,
    }
