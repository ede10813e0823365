"""monitoring: gauges measured by one run, kept across restarts

Revision ID: 0009_monitoring
Revises: 0008_console
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0009_monitoring"
down_revision = "0008_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_gauges",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("labels", sa.String(length=500), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("measured_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitoring_gauges")
