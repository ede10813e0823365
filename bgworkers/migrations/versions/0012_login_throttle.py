"""console: failed logins counted in the database, shared by every console process

Revision ID: 0012_login_throttle
Revises: 0011_console_timeline
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_login_throttle"
down_revision = "0011_console_timeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("key", sa.String(length=120), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_console_login_failures_last_failed_at", "console_login_failures", ["last_failed_at"]
    )


def downgrade() -> None:
    op.drop_table("console_login_failures")
