"""Proactive notices: the `proactive` table and its timeline, triggers about them, and a CI's
customer contact, its language and its time zone.

Revision ID: 0015
Revises: 0009
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. The CI's
columns are nullable and new, so existing rows keep their values. `flowtrigger` gains
`proactive_id` (foreign key, index, unique key per subject) and its one-subject check counts it:
SQLite cannot change a check in place, so batch mode copies the table, as 0003 did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OPEN_OCCURRENCE = "cleared_at IS NULL"
SUBJECTS = ("incident", "change", "problem")


def _one_subject(subjects: tuple[str, ...]) -> str:
    return " + ".join(f"(CASE WHEN {kind}_id IS NULL THEN 0 ELSE 1 END)" for kind in subjects) + (
        " = 1"
    )


def upgrade() -> None:
    with op.batch_alter_table("configurationitem") as batch:
        batch.add_column(sa.Column("customer_contact", sa.String(length=254), nullable=True))
        batch.add_column(sa.Column("customer_language", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.create_table(
        "proactive",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ci_name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("item", sa.String(length=300), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("check_name", sa.String(length=100), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposed_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposed_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=True),
        sa.Column("owner_group", sa.String(length=64), nullable=True),
        sa.Column("customer_contact", sa.String(length=254), nullable=True),
        sa.Column("customer_language", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["change_id"], ["change.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["inspectionrun.id"]),
    )
    op.create_index(op.f("ix_proactive_ci_name"), "proactive", ["ci_name"], unique=False)
    op.create_index(op.f("ix_proactive_status"), "proactive", ["status"], unique=False)
    op.create_index(op.f("ix_proactive_created_at"), "proactive", ["created_at"], unique=False)
    op.create_index(
        "ux_proactive_open_ci_kind",
        "proactive",
        ["ci_name", "kind"],
        unique=True,
        sqlite_where=sa.text(OPEN_OCCURRENCE),
        postgresql_where=sa.text(OPEN_OCCURRENCE),
    )
    op.create_table(
        "proactiveentry",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proactive_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["proactive_id"], ["proactive.id"]),
    )
    op.create_index(op.f("ix_proactiveentry_kind"), "proactiveentry", ["kind"], unique=False)
    op.create_index(
        op.f("ix_proactiveentry_proactive_id"), "proactiveentry", ["proactive_id"], unique=False
    )
    with op.batch_alter_table("flowtrigger") as batch:
        batch.add_column(sa.Column("proactive_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "flowtrigger_proactive_id_fkey", "proactive", ["proactive_id"], ["id"]
        )
        batch.create_unique_constraint("flowtrigger_proactive_id_key_key", ["proactive_id", "key"])
        batch.drop_constraint("flowtrigger_one_subject", type_="check")
        batch.create_check_constraint(
            "flowtrigger_one_subject", sa.text(_one_subject((*SUBJECTS, "proactive")))
        )
        batch.create_index(batch.f("ix_flowtrigger_proactive_id"), ["proactive_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM flowtrigger WHERE proactive_id IS NOT NULL")
    with op.batch_alter_table("flowtrigger") as batch:
        batch.drop_index(batch.f("ix_flowtrigger_proactive_id"))
        batch.drop_constraint("flowtrigger_one_subject", type_="check")
        batch.create_check_constraint("flowtrigger_one_subject", sa.text(_one_subject(SUBJECTS)))
        batch.drop_constraint("flowtrigger_proactive_id_key_key", type_="unique")
        batch.drop_constraint("flowtrigger_proactive_id_fkey", type_="foreignkey")
        batch.drop_column("proactive_id")
    op.drop_table("proactiveentry")
    op.drop_table("proactive")
    with op.batch_alter_table("configurationitem") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("customer_language")
        batch.drop_column("customer_contact")
