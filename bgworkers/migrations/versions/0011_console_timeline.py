"""console: a dead letter's trace id and the attempts of messages that failed at least once

Revision ID: 0011_console_timeline
Revises: 0010_rate_limits
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0011_console_timeline"
down_revision = "0010_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "console_dead_letters",
        sa.Column("trace_id", sa.String(length=32), nullable=False, server_default=""),
    )
    op.create_table(
        "console_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
    )
    op.create_index("ix_console_attempts_message_id", "console_attempts", ["message_id"])
    op.create_index("ix_console_attempts_started_at", "console_attempts", ["started_at"])


def downgrade() -> None:
    op.drop_table("console_attempts")
    with op.batch_alter_table("console_dead_letters") as batch:
        batch.drop_column("trace_id")
