"""Triggers for every process: a trigger's subject is an incident, a change or a problem.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

`flowtrigger.incident_id` becomes nullable, `change_id` and `problem_id` are added (each with its
foreign key, index and unique key per subject), and a check keeps exactly one of the three set.
Every existing row is an incident's and keeps its incident_id, so nothing is rewritten. SQLite
cannot relax NOT NULL or add a check in place: batch mode copies the table (foreign keys are off
while a revision runs, and checked before its commit); PostgreSQL alters it in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ONE_SUBJECT = (
    "(CASE WHEN incident_id IS NULL THEN 0 ELSE 1 END) + "
    "(CASE WHEN change_id IS NULL THEN 0 ELSE 1 END) + "
    "(CASE WHEN problem_id IS NULL THEN 0 ELSE 1 END) = 1"
)


def upgrade() -> None:
    with op.batch_alter_table("flowtrigger") as batch:
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=True)
        for subject in ("change", "problem"):
            batch.add_column(sa.Column(f"{subject}_id", sa.Integer(), nullable=True))
            # PostgreSQL's own names for them, which the model states for SQLite's sake.
            batch.create_foreign_key(
                f"flowtrigger_{subject}_id_fkey", subject, [f"{subject}_id"], ["id"]
            )
            batch.create_unique_constraint(
                f"flowtrigger_{subject}_id_key_key", [f"{subject}_id", "key"]
            )
        batch.create_check_constraint("flowtrigger_one_subject", sa.text(ONE_SUBJECT))
        batch.create_index(batch.f("ix_flowtrigger_change_id"), ["change_id"], unique=False)
        batch.create_index(batch.f("ix_flowtrigger_problem_id"), ["problem_id"], unique=False)


def downgrade() -> None:
    # Only incidents' triggers can go back to a table that knows no other subject.
    op.execute("DELETE FROM flowtrigger WHERE incident_id IS NULL")
    with op.batch_alter_table("flowtrigger") as batch:
        batch.drop_index(batch.f("ix_flowtrigger_problem_id"))
        batch.drop_index(batch.f("ix_flowtrigger_change_id"))
        batch.drop_constraint("flowtrigger_one_subject", type_="check")
        batch.drop_column("problem_id")
        batch.drop_column("change_id")
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=False)
