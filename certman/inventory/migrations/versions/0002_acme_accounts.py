"""ACME accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import certman.inventory.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("account_url", sa.Text(), nullable=True),
        sa.Column("key_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=True),
        sa.Column("eab_kid", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("retry_after", certman.inventory.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", certman.inventory.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", certman.inventory.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "directory", name="uq_acme_account"),
    )


def downgrade() -> None:
    op.drop_table("acme_account")
