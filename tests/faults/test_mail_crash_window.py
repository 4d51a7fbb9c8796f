"""The mail intake killed between its steps stores each mail once.

A real process runs the `read-mailbox` flow (real dovecot, real Prefect test server) and is
killed (os._exit, no clean-up) at one of two points: after fetching, before storing; and after
the store's commit, before the mailbox is told. The next run, in another process, must store
the mail once, keep one acknowledgement, and leave the mailbox marked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prefect.settings import PREFECT_API_URL
from sqlmodel import Session, select

from itilflow.flows.mail import read_mailbox
from itilflow.models import FlowTrigger, Incident, MailMessage
from tests.support.mail import dovecot, mail_rt, make_mail  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("prefect_server")

# The intake in its own process, killed where `KILL` says: "store" replaces the store step
# (dies having fetched), "mark" the mailbox connection of the mark step (dies having stored).
SCRIPT = textwrap.dedent(
    """
    import os, sys
    from itilflow import runtime
    from itilflow.settings import Settings
    from itilflow.tasks.mail import mark_mail, store_mail

    def die(*_args, **_kwargs):
        os._exit(9)

    runtime.configure(Settings())
    if sys.argv[1] == "store":
        store_mail._store_one = die
    elif sys.argv[1] == "mark":
        mark_mail.open_mailbox = die
    from itilflow.flows.mail import read_mailbox
    print(read_mailbox())
    """
)


def run_intake(rt, kill: str) -> subprocess.CompletedProcess[str]:
    s = rt.settings
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "ITILFLOW_DATA_DIR": str(s.data_dir),
        "ITILFLOW_DATABASE_URL": s.database_url,
        "ITILFLOW_POLICY_DIR": str(s.policy_dir),
        "ITILFLOW_MAIL_FROM": s.mail_from,
        "ITILFLOW_PUBLIC_URL": s.public_url,
        "ITILFLOW_SMTP_PORT": str(s.smtp_port),
    }
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, kill],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def stored(rt) -> tuple[int, int, list[str]]:
    with Session(rt.engine) as session:
        incidents = len(session.exec(select(Incident)).all())
        acknowledgements = [
            t for t in session.exec(select(FlowTrigger)) if t.key == "notify:mail_received"
        ]
        rows = [row.outcome for row in session.exec(select(MailMessage))]
    return incidents, len(acknowledgements), rows


@pytest.mark.parametrize("kill", ["store", "mark"])
def test_a_killed_intake_stores_the_mail_once_after_restart(
    mail_rt,  # noqa: F811 (the fixture)
    dovecot,  # noqa: F811
    kill,
    fault_figures,
):
    dovecot.append(bytes(make_mail()))

    died = run_intake(mail_rt, kill)
    assert died.returncode == 9, died.stdout + died.stderr
    if kill == "store":
        assert stored(mail_rt) == (0, 0, [])  # fetched, nothing stored
    else:
        assert stored(mail_rt) == (1, 1, ["opened"])  # stored, the mailbox not told
    assert not any("$Itilflow" in flags for flags in dovecot.flags())

    again = read_mailbox()  # the restart: the same mail is read again
    assert again == ({"opened": 1, "more": 0} if kill == "store" else {"duplicate": 1, "more": 0})
    assert stored(mail_rt) == (1, 1, ["opened"])
    assert all("$Itilflow" in flags for flags in dovecot.flags())
    assert read_mailbox() == {"more": 0}
    fault_figures(f"mail intake killed before {kill}", incidents=1, acknowledgements=1)
