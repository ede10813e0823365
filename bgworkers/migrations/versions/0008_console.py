"""console: dead-letter index, audit log and job pauses

Revision ID: 0008_console
Revises: 0005_scheduling
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0008_console"
down_revision = "0005_scheduling"
branch_labels = ("console",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_dead_letters",
        sa.Column("message_id", sa.String(length=64), primary_key=True),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("first_failed_at", UtcDateTime(), nullable=False),
        sa.Column("last_failed_at", UtcDateTime(), nullable=False),
        sa.Column("dead_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requeued_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_console_dead_letters_queue", "console_dead_letters", ["queue"])
    op.create_index("ix_console_dead_letters_actor", "console_dead_letters", ["actor"])
    op.create_index(
        "ix_console_dead_letters_last_failed_at", "console_dead_letters", ["last_failed_at"]
    )
    op.create_table(
        "console_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"])
    op.create_table(
        "scheduled_job_pauses",
        sa.Column("job", sa.String(length=100), primary_key=True),
        sa.Column("paused_at", UtcDateTime(), nullable=False),
        sa.Column("paused_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_job_pauses")
    op.drop_index("ix_console_audit_at", "console_audit")
    op.drop_table("console_audit")
    op.drop_index("ix_console_dead_letters_last_failed_at", "console_dead_letters")
    op.drop_index("ix_console_dead_letters_actor", "console_dead_letters")
    op.drop_index("ix_console_dead_letters_queue", "console_dead_letters")
    op.drop_table("console_dead_letters")
