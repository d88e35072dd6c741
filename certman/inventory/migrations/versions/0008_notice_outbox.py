"""Notices: an outbox (recorded before they are sent, delivered per channel, retried)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import certman.inventory.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.alter_column(
            "sent_at",
            existing_type=certman.inventory.types.UTCDateTime(timezone=True),
            nullable=True,
        )
        batch_op.add_column(
            sa.Column(
                "created_at", certman.inventory.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("payload", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "pending",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column(
                "next_attempt_at",
                certman.inventory.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.create_index("ix_notification_next_attempt_at", ["next_attempt_at"], unique=False)
    # Rows from before the outbox were recorded when they had been sent.
    op.execute("UPDATE notification SET created_at = sent_at")


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE sent_at IS NULL")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_next_attempt_at")
        batch_op.drop_column("last_error")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("failures")
        batch_op.drop_column("pending")
        batch_op.drop_column("payload")
        batch_op.drop_column("created_at")
        batch_op.alter_column(
            "sent_at",
            existing_type=certman.inventory.types.UTCDateTime(timezone=True),
            nullable=False,
        )
