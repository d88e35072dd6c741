"""ARI: when to ask the CA for a certificate's renewal window again (RFC 9773 section 4.3)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import certman.inventory.types

revision = "0007"
down_revision = "0006"
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
    # Certificates ordered through ACME before this revision read their window once, at
    # activation: ask again on the first tick after the upgrade (a server without ARI
    # clears it then). Only ACME revisions have an order URL.
    op.execute(
        sa.text(
            "UPDATE certificate SET ari_next_fetch_at = :now WHERE status = 'active' "
            "AND EXISTS (SELECT 1 FROM revision WHERE revision.certificate_id = certificate.id "
            "AND revision.number = certificate.current_revision "
            "AND revision.order_url IS NOT NULL)"
        ).bindparams(
            sa.bindparam(
                "now",
                value=datetime.now(UTC).replace(microsecond=0),
                type_=certman.inventory.types.UTCDateTime(timezone=True),
            )
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.drop_index("ix_certificate_status_ari")
        batch_op.drop_column("ari_next_fetch_at")
