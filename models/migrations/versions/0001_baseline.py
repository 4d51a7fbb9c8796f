"""Baseline: the schema of itilflow before migrations (main at c2ee023), written out.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

Frozen on purpose: plain SQLAlchemy types, not the models' (UTCDateTime is a DateTime with time
zone, AutoString a String), so that later changes to the models never change what this revision
makes. tests/migrations/test_schema.py checks that it equals the models' metadata on SQLite and
on PostgreSQL; an installation made by `create_all` before migrations existed is stamped with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Stored as the members' names; PostgreSQL keeps them as enum types of their own.
INCIDENT_STATUS = sa.Enum(
    "new", "assigned", "acknowledged", "on_hold", "resolved", "closed", name="incidentstatus"
)
CHANGE_STATUS = sa.Enum(
    "submitted",
    "awaiting_approval",
    "approved",
    "scheduled",
    "implementing",
    "successful",
    "rolled_back",
    "rollback_failed",
    "backup_failed",
    "rejected",
    "refused",
    "expired",
    "cancelled",
    "crashed",
    name="changestatus",
)
PROBLEM_STATUS = sa.Enum(
    "open",
    "investigating",
    "known_error",
    "fix_in_progress",
    "resolved",
    "closed",
    name="problemstatus",
)


def upgrade() -> None:
    op.create_table(
        "configurationitem",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("criticality", sa.String(), nullable=False),
        sa.Column("owner_group", sa.String(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "group",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("lead", sa.String(length=64), nullable=True),
        sa.Column("manager", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "incident",
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.String(length=20000), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("ci_name", sa.String(length=200), nullable=True),
        sa.Column("impact", sa.String(length=32), nullable=True),
        sa.Column("urgency", sa.String(length=32), nullable=True),
        sa.Column("reporter_name", sa.String(length=200), nullable=True),
        sa.Column("reporter_email", sa.String(length=320), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=True),
        sa.Column("status", INCIDENT_STATUS, nullable=False),
        sa.Column("group_name", sa.String(), nullable=True),
        sa.Column("assignee", sa.String(), nullable=True),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("dedup_key", sa.String(length=300), nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("escalation", sa.JSON(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("survey_score", sa.Integer(), nullable=True),
        sa.Column("survey_comment", sa.String(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
        sa.ForeignKeyConstraint(["parent_id"], ["incident.id"]),
    )
    op.create_index(op.f("ix_incident_assignee"), "incident", ["assignee"], unique=False)
    op.create_index(op.f("ix_incident_fingerprint"), "incident", ["fingerprint"], unique=False)
    op.create_index(op.f("ix_incident_group_name"), "incident", ["group_name"], unique=False)
    op.create_index(op.f("ix_incident_opened_at"), "incident", ["opened_at"], unique=False)
    op.create_index(op.f("ix_incident_priority"), "incident", ["priority"], unique=False)
    op.create_index(op.f("ix_incident_status"), "incident", ["status"], unique=False)
    op.create_table(
        "inspectionrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("targets", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("warning", sa.Integer(), nullable=False),
        sa.Column("critical", sa.Integer(), nullable=False),
        sa.Column("error", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_inspectionrun_group"), "inspectionrun", ["group"], unique=False)
    op.create_index(
        op.f("ix_inspectionrun_started_at"), "inspectionrun", ["started_at"], unique=False
    )
    op.create_table(
        "change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("ci_names", sa.JSON(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("planned_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("planned_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requester", sa.String(length=200), nullable=False),
        sa.Column("requester_email", sa.String(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", CHANGE_STATUS, nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=True),
        sa.Column("risk_level", sa.String(), nullable=True),
        sa.Column("risk_reasons", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("review", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    )
    op.create_index(op.f("ix_change_status"), "change", ["status"], unique=False)
    op.create_table(
        "checkresult",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("check_name", sa.String(length=100), nullable=False),
        sa.Column("check_type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["inspectionrun.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    )
    op.create_index(op.f("ix_checkresult_run_id"), "checkresult", ["run_id"], unique=False)
    op.create_index(op.f("ix_checkresult_status"), "checkresult", ["status"], unique=False)
    op.create_index(
        "ix_checkresult_target_check_at",
        "checkresult",
        ["target", "check_name", "at"],
        unique=False,
    )
    op.create_table(
        "engineer",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("group_name", sa.String(), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("username"),
        sa.ForeignKeyConstraint(["group_name"], ["group.name"]),
    )
    op.create_index(op.f("ix_engineer_group_name"), "engineer", ["group_name"], unique=False)
    op.create_table(
        "flowtrigger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "key"),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    )
    op.create_index(op.f("ix_flowtrigger_done_at"), "flowtrigger", ["done_at"], unique=False)
    op.create_index(op.f("ix_flowtrigger_due_at"), "flowtrigger", ["due_at"], unique=False)
    op.create_index(
        op.f("ix_flowtrigger_incident_id"), "flowtrigger", ["incident_id"], unique=False
    )
    op.create_table(
        "timelineentry",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    )
    op.create_index(
        op.f("ix_timelineentry_incident_id"), "timelineentry", ["incident_id"], unique=False
    )
    op.create_index(op.f("ix_timelineentry_kind"), "timelineentry", ["kind"], unique=False)
    op.create_table(
        "approvalrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("approver", sa.String(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_via", sa.String(), nullable=True),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
        sa.ForeignKeyConstraint(["change_id"], ["change.id"]),
    )
    op.create_index(
        op.f("ix_approvalrequest_change_id"), "approvalrequest", ["change_id"], unique=False
    )
    op.create_table(
        "changeentry",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["change_id"], ["change.id"]),
    )
    op.create_index(op.f("ix_changeentry_change_id"), "changeentry", ["change_id"], unique=False)
    op.create_index(op.f("ix_changeentry_kind"), "changeentry", ["kind"], unique=False)
    op.create_table(
        "problem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("status", PROBLEM_STATUS, nullable=False),
        sa.Column("match_kind", sa.String(length=16), nullable=False),
        sa.Column("match_value", sa.String(length=300), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("owner_group", sa.String(length=64), nullable=True),
        sa.Column("whys", sa.JSON(), nullable=True),
        sa.Column("root_cause", sa.String(), nullable=False),
        sa.Column("root_cause_category", sa.String(length=32), nullable=True),
        sa.Column("workaround", sa.String(), nullable=False),
        sa.Column("known_error", sa.Boolean(), nullable=False),
        sa.Column("fix_change_id", sa.Integer(), nullable=True),
        sa.Column("last_incident_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["fix_change_id"], ["change.id"]),
    )
    op.create_index(op.f("ix_problem_status"), "problem", ["status"], unique=False)
    op.create_index(
        "ux_problem_open_match",
        "problem",
        ["match_kind", "match_value"],
        unique=True,
        sqlite_where=sa.text("status != 'closed'"),
        postgresql_where=sa.text("status != 'closed'"),
    )
    op.create_table(
        "approvalcode",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["request_id"], ["approvalrequest.id"]),
    )
    op.create_index(
        op.f("ix_approvalcode_request_id"), "approvalcode", ["request_id"], unique=False
    )
    op.create_table(
        "knowledgearticle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("symptoms", sa.String(), nullable=False),
        sa.Column("workaround", sa.String(), nullable=False),
        sa.Column("root_cause", sa.String(), nullable=False),
        sa.Column("keywords", sa.String(), nullable=False),
        sa.Column("ci_name", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("problem_id"),
        sa.ForeignKeyConstraint(["problem_id"], ["problem.id"]),
    )
    op.create_index(
        op.f("ix_knowledgearticle_ci_name"), "knowledgearticle", ["ci_name"], unique=False
    )
    op.create_index(
        op.f("ix_knowledgearticle_fingerprint"), "knowledgearticle", ["fingerprint"], unique=False
    )
    op.create_table(
        "problementry",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["problem_id"], ["problem.id"]),
    )
    op.create_index(op.f("ix_problementry_kind"), "problementry", ["kind"], unique=False)
    op.create_index(
        op.f("ix_problementry_problem_id"), "problementry", ["problem_id"], unique=False
    )
    op.create_table(
        "problemincident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("problem_id", "incident_id"),
        sa.ForeignKeyConstraint(["problem_id"], ["problem.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    )
    op.create_index(
        op.f("ix_problemincident_incident_id"), "problemincident", ["incident_id"], unique=False
    )
    op.create_index(
        op.f("ix_problemincident_problem_id"), "problemincident", ["problem_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("problemincident")
    op.drop_table("problementry")
    op.drop_table("knowledgearticle")
    op.drop_table("approvalcode")
    op.drop_table("problem")
    op.drop_table("changeentry")
    op.drop_table("approvalrequest")
    op.drop_table("timelineentry")
    op.drop_table("flowtrigger")
    op.drop_table("engineer")
    op.drop_table("checkresult")
    op.drop_table("change")
    op.drop_table("inspectionrun")
    op.drop_table("incident")
    op.drop_table("group")
    op.drop_table("configurationitem")
    bind = op.get_bind()
    for enum in (INCIDENT_STATUS, CHANGE_STATUS, PROBLEM_STATUS):
        enum.drop(bind, checkfirst=True)
