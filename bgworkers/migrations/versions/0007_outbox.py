"""outbox: messages written in the caller's transaction, published by the relay

Revision ID: 0007_outbox
Revises: 0005_scheduling
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0007_outbox"
down_revision = "0005_scheduling"
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("available_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
    )
    op.create_index("ix_outbox_messages_published_at_id", "outbox_messages", ["published_at", "id"])
    op.create_table(
        "outbox_relay_lease",
        sa.Column("name", sa.String(length=50), primary_key=True),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_relay_lease")
    op.drop_index("ix_outbox_messages_published_at_id", table_name="outbox_messages")
    op.drop_table("outbox_messages")
