"""On-call overrides made through the API, and people's calendar feed nonces.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. Two new
tables; nothing existing is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oncall_override",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("instead_of", sa.String(length=64), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_oncall_override_group_name"), "oncall_override", ["group_name"], unique=False
    )
    op.create_table(
        "oncall_feed",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )


def downgrade() -> None:
    op.drop_table("oncall_feed")
    op.drop_index(op.f("ix_oncall_override_group_name"), table_name="oncall_override")
    op.drop_table("oncall_override")
