"""Team data: engineers' phone, time zone, groups and active flag; groups' escalation contacts
and active flag; CIs' environment, dependencies and active flag.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Only columns are added (SQLite adds them in place, no table copy). Existing rows stay active
(server default), an engineer's memberships start as their one group, and the new list columns
start empty rather than NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = {"nullable": False, "server_default": sa.text("true")}


def upgrade() -> None:
    op.add_column("group", sa.Column("escalation_contacts", sa.JSON(), nullable=True))
    op.add_column("group", sa.Column("active", sa.Boolean(), **ACTIVE))
    op.add_column("engineer", sa.Column("phone", sa.String(length=40), nullable=True))
    op.add_column("engineer", sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.add_column("engineer", sa.Column("groups", sa.JSON(), nullable=True))
    op.add_column("engineer", sa.Column("active", sa.Boolean(), **ACTIVE))
    op.add_column(
        "configurationitem", sa.Column("environment", sa.String(length=64), nullable=True)
    )
    op.add_column("configurationitem", sa.Column("depends_on", sa.JSON(), nullable=True))
    op.add_column("configurationitem", sa.Column("active", sa.Boolean(), **ACTIVE))

    array_of = "json_array" if op.get_bind().dialect.name == "sqlite" else "json_build_array"
    op.execute(f"UPDATE engineer SET groups = {array_of}(group_name)")
    op.execute("""UPDATE "group" SET escalation_contacts = '[]'""")
    op.execute("UPDATE configurationitem SET depends_on = '[]'")


def downgrade() -> None:
    with op.batch_alter_table("configurationitem") as batch:
        for column in ("active", "depends_on", "environment"):
            batch.drop_column(column)
    with op.batch_alter_table("engineer") as batch:
        for column in ("active", "groups", "time_zone", "phone"):
            batch.drop_column(column)
    with op.batch_alter_table("group") as batch:
        for column in ("active", "escalation_contacts"):
            batch.drop_column(column)
