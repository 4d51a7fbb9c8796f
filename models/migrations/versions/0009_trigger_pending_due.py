"""The oldest due triggers from an index over pending rows only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

The claim's oldest share and `next_due_at` ask for pending triggers due by now, earliest first.
SQLite answered them from the `done_at` index and sorted every pending trigger, future SLA
timers included: with 50,000 incidents open, 208,000 rows and 45-60 ms a query, ~30 % of a core
for an idle runner polling every 0.2 s (bench/processing.py). A partial index on (due_at, id)
over pending rows gives them in order and stops at the first not yet due; the index on done_at
goes, since with it SQLite's planner kept choosing it (`done_at IS NULL`) and sorting: 43 ms ->
0.03 ms a query with 200,000 future timers pending. Nothing asks for a range of done_at.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PENDING = "done_at IS NULL AND cancelled_at IS NULL"


def upgrade() -> None:
    op.drop_index("ix_flowtrigger_done_at", table_name="flowtrigger")
    op.create_index(
        "ix_flowtrigger_pending_due",
        "flowtrigger",
        ["due_at", "id"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_flowtrigger_pending_due", table_name="flowtrigger")
    op.create_index("ix_flowtrigger_done_at", "flowtrigger", ["done_at"], unique=False)
