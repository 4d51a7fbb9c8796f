"""The change statuses of the requester's acceptance: awaiting_signoff, customer_rejected.

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-03

PostgreSQL keeps the status as an enum type of its own: the two members are added to it. SQLite
stores the status as VARCHAR(17) without a check, and both names fit: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NEW_MEMBERS = ("awaiting_signoff", "customer_rejected")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for member in NEW_MEMBERS:
        # PostgreSQL 12+ adds enum members inside a transaction (used only after its commit).
        op.execute(f"ALTER TYPE changestatus ADD VALUE IF NOT EXISTS '{member}'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum member; the members stay, unused, after a downgrade.
    pass
