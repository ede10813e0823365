"""sync: listing generations for Notion, so pages no longer listed are marked archived

Revision ID: 0006_notion_generation
Revises: 0004_sync
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_notion_generation"
down_revision = "0004_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notion_connections") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("notion_pages") as batch:
        batch.add_column(
            sa.Column("sync_generation", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("notion_pages") as batch:
        batch.drop_column("sync_generation")
    with op.batch_alter_table("notion_connections") as batch:
        batch.drop_column("generation")
