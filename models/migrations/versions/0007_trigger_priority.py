"""Triggers are served by priority: `flowtrigger.priority_rank` and the index the claim uses.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. The rank is
the incident's priority's number (1 for P1 ... 4 for P4), 5 for work without one. Existing rows
are ranked 5 by the server default and then, for pending triggers of a classified incident, by
its priority, so that the work waiting at the upgrade is served as new work would be. Adding a
column with a default needs no table copy on SQLite, so no batch mode.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = "done_at IS NULL AND cancelled_at IS NULL"


def upgrade() -> None:
    op.add_column(
        "flowtrigger",
        sa.Column("priority_rank", sa.Integer(), nullable=False, server_default=sa.text("5")),
    )
    op.execute(
        f"""
        UPDATE flowtrigger SET priority_rank = (
            SELECT CAST(substr(incident.priority, 2, 1) AS INTEGER) FROM incident
            WHERE incident.id = flowtrigger.incident_id
        )
        WHERE {PENDING} AND incident_id IN (
            SELECT id FROM incident WHERE priority IN ('P1', 'P2', 'P3', 'P4')
        )
        """
    )
    op.create_index(
        "ix_flowtrigger_pending_rank_due",
        "flowtrigger",
        ["priority_rank", "due_at"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_flowtrigger_pending_rank_due", table_name="flowtrigger")
    with op.batch_alter_table("flowtrigger") as batch:
        batch.drop_column("priority_rank")
