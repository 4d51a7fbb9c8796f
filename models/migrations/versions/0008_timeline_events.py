"""The outbox of Prefect events: `timeline_event`, one row per timeline entry not sent yet.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. A new
table; the entries written before it get no event (the Prefect UI's feed starts at the upgrade).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timeline_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("occurred", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=80), nullable=False),
        sa.Column("resource", sa.String(length=40), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("timeline_event")
