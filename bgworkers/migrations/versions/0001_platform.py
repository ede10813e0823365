"""platform: scheduler heartbeat

Revision ID: 0001_platform
Revises:
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db import UtcDateTime

revision = "0001_platform"
down_revision = None
branch_labels = ("platform",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_heartbeat",
        sa.Column("source", sa.String(length=64), primary_key=True),
        sa.Column("scheduled_at", UtcDateTime(), nullable=True),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_heartbeat")
