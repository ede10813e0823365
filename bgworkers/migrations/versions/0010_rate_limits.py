"""sync: rate-limit slots shared by every worker process and host

Revision ID: 0010_rate_limits
Revises: 0009_monitoring
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_rate_limits"
down_revision = "0009_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_slots",
        sa.Column("key", sa.String(length=120), primary_key=True),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("waited_s", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_slots")
