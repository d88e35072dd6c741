"""Audit: the sealed HMAC key of the audit chain

Events appended before this upgrade keep their SHA-256 links (and are reported as such);
the key is created, sealed by the key wrapper, with the first event appended after it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import certman.inventory.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_key",
        sa.Column("first_seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("created_at", certman.inventory.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("first_seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_key")
