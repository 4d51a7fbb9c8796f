"""Browser sign-in: one-time sign-in requests (mailed code and link) and sessions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. Two new
tables; nothing existing is rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("link_hash", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_signin_request_person"), "signin_request", ["person"])
    op.create_index(op.f("ix_signin_request_client"), "signin_request", ["client"])
    op.create_index(op.f("ix_signin_request_created_at"), "signin_request", ["created_at"])
    op.create_table(
        "browser_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idle_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("id_hash"),
    )
    op.create_index(op.f("ix_browser_session_person"), "browser_session", ["person"])


def downgrade() -> None:
    op.drop_index(op.f("ix_browser_session_person"), table_name="browser_session")
    op.drop_table("browser_session")
    op.drop_index(op.f("ix_signin_request_created_at"), table_name="signin_request")
    op.drop_index(op.f("ix_signin_request_client"), table_name="signin_request")
    op.drop_index(op.f("ix_signin_request_person"), table_name="signin_request")
    op.drop_table("signin_request")
