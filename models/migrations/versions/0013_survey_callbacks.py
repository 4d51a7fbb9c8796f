"""Survey callbacks: one row per level of the callback an unsatisfied survey starts.

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-03

Issue 15 item 4: the callback in levels replaces the follow-up incident (models/callback.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "surveycallback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("who", sa.String(length=20), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lapsed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "level"),
    )
    op.create_index("ix_surveycallback_incident_id", "surveycallback", ["incident_id"])
    op.create_index("ix_surveycallback_started_at", "surveycallback", ["started_at"])


def downgrade() -> None:
    op.drop_table("surveycallback")
