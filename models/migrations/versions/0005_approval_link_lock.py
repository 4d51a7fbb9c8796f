"""Approval links lock after their code cap: `approvalrequest.locked_at`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A link that was asked for more codes than `approval_links.max_codes_per_link` allows is locked:
no more codes, no decisions by it. One nullable column; existing links are unlocked. Adding a
nullable column needs no table copy on SQLite, so no batch mode. Segregation overrides are
timeline entries (kind `segregation_override`) and need no schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "approvalrequest", sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("approvalrequest") as batch:
        batch.drop_column("locked_at")
