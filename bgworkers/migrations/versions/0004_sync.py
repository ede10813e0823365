"""sync: calendar and Notion connections, calendar events, Notion pages

Revision ID: 0004_sync
Revises: 0001_platform
"""

import sqlalchemy as sa
from alembic import op

from bgworkers.db.engine import UtcDateTime

revision = "0004_sync"
down_revision = "0001_platform"
branch_labels = ("sync",)
depends_on = None


def _user_fk() -> sa.Column[int]:
    return sa.Column(
        "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "calendar_connections",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_fk(),
        sa.Column("calendar_id", sa.String(length=255), nullable=False),
        sa.Column("access_token", sa.String(length=4096), nullable=False),
        sa.Column("access_token_expires_at", UtcDateTime(), nullable=True),
        sa.Column("refresh_token", sa.String(length=4096), nullable=False),
        sa.Column("sync_token", sa.String(length=4096), nullable=True),
        sa.Column("page_token", sa.String(length=4096), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", UtcDateTime(), nullable=True),
        sa.Column("last_synced_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_calendar_connections_user_id", "calendar_connections", ["user_id"], unique=True
    )
    op.create_index("ix_calendar_connections_status", "calendar_connections", ["status"])

    op.create_table(
        "calendar_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_fk(),
        sa.Column("calendar_id", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=1024), nullable=False),
        sa.Column("title", sa.String(length=1024), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=False),
        sa.Column("ends_at", UtcDateTime(), nullable=True),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("remote_updated_at", UtcDateTime(), nullable=True),
        sa.Column("sync_generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint(
            "user_id", "calendar_id", "external_id", name="uq_calendar_events_user_calendar_ext"
        ),
    )
    op.create_index("ix_calendar_events_user_id", "calendar_events", ["user_id"])
    op.create_index("ix_calendar_events_user_starts", "calendar_events", ["user_id", "starts_at"])

    op.create_table(
        "notion_connections",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_fk(),
        sa.Column("access_token", sa.String(length=4096), nullable=False),
        sa.Column("cursor", sa.String(length=1024), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", UtcDateTime(), nullable=True),
        sa.Column("last_synced_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_notion_connections_user_id", "notion_connections", ["user_id"], unique=True)
    op.create_index("ix_notion_connections_status", "notion_connections", ["status"])

    op.create_table(
        "notion_pages",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_fk(),
        sa.Column("notion_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=2000), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("last_edited_time", UtcDateTime(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "notion_id", name="uq_notion_pages_user_notion"),
    )
    op.create_index("ix_notion_pages_user_id", "notion_pages", ["user_id"])


def downgrade() -> None:
    op.drop_table("notion_pages")
    op.drop_table("notion_connections")
    op.drop_table("calendar_events")
    op.drop_table("calendar_connections")
