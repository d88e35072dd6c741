"""ARI: when to ask the CA for a certificate's renewal window again (RFC 9773 section 4.3)

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import certman.inventory.types

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "ari_next_fetch_at",
                certman.inventory.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            "ix_certificate_status_ari", ["status", "ari_next_fetch_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.drop_index("ix_certificate_status_ari")
        batch_op.drop_column("ari_next_fetch_at")
