"""email: an index on lower(recipient), so a user's backup finds the user's outbox emails
without reading the whole outbox

Revision ID: 0013_outbox_recipient_index
Revises: 0002_reminders_email
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_outbox_recipient_index"
down_revision = "0002_reminders_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_email_outbox_recipient_lower", "email_outbox", [sa.text("lower(recipient)")]
    )


def downgrade() -> None:
    op.drop_index("ix_email_outbox_recipient_lower", table_name="email_outbox")
