"""Principals: API tokens of people and integrations (stored hashed), and role grants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. Two new
tables; nothing existing is rewritten. The shared ITILFLOW_API_TOKEN keeps working as
the admin's bootstrap token, so an upgraded install is reachable before its first token exists.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_api_token_principal"), "api_token", ["principal"], unique=False)
    op.create_table(
        "role_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("role", "subject_kind", "subject", name="role_grant_once_key"),
    )
    op.create_index(op.f("ix_role_grant_subject"), "role_grant", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_role_grant_subject"), table_name="role_grant")
    op.drop_table("role_grant")
    op.drop_index(op.f("ix_api_token_principal"), table_name="api_token")
    op.drop_table("api_token")
