"""The mail intake's record of every mail it took, and the attachments it kept.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Plain SQLAlchemy types (as in 0001): later model changes never change this revision. The unique
message_id is what makes the intake exactly-once (models/mail.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_mail_message_sender", "mail_message", ["sender"])
    op.create_index("ix_mail_message_incident_id", "mail_message", ["incident_id"])
    op.create_index("ix_mail_message_received_at", "mail_message", ["received_at"])
    op.create_table(
        "mail_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mail_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("refused", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["mail_id"], ["mail_message.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_attachment_mail_id", "mail_attachment", ["mail_id"])
    op.create_index("ix_mail_attachment_incident_id", "mail_attachment", ["incident_id"])


def downgrade() -> None:
    op.drop_table("mail_attachment")
    op.drop_table("mail_message")
