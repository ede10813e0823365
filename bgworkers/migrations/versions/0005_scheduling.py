"""scheduling: claimed runs (job, tick) and per-job state

Revision ID: 0005_scheduling
Revises: 0001_platform
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0005_scheduling"
down_revision = "0001_platform"
branch_labels = ("scheduling",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_runs",
        sa.Column("job", sa.String(length=100), primary_key=True),
        sa.Column("tick", UtcDateTime(), primary_key=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
    )
    op.create_table(
        "scheduled_job_state",
        sa.Column("job", sa.String(length=100), primary_key=True),
        sa.Column("running_message_id", sa.String(length=64), nullable=True),
        sa.Column("running_tick", UtcDateTime(), nullable=True),
        sa.Column("running_since", UtcDateTime(), nullable=True),
        sa.Column("checked_until", UtcDateTime(), nullable=True),
        sa.Column("missed_ticks", sa.Integer(), nullable=False),
        sa.Column("last_missed_tick", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("scheduled_job_state")
    op.drop_table("scheduled_runs")
