"""The inventory's tables (SQLModel). Schema changes go through migrations/versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from certman.inventory.types import UTCDateTime


def _dt(*, nullable: bool = True, index: bool = False) -> datetime | None:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _text(*, nullable: bool = True) -> str | None:
    return Field(default=None, sa_column=Column(Text(), nullable=nullable))


class CertificateBase(SQLModel):
    """What an operator asked for, and where the certificate stands now."""

    name: str = Field(max_length=255)
    source: str = Field(default="managed", max_length=16)
    issuer: str = Field(default="", max_length=255)
    domains: str = Field(default="[]", sa_column=Column(Text(), nullable=False))
    key_type: str = Field(default="", max_length=16)
    validity_seconds: int = 0
    renew_before_seconds: int | None = None
    reuse_key: bool = False
    targets: str = Field(default="[]", sa_column=Column(Text(), nullable=False))
    status: str = Field(default="pending", max_length=16)
    current_revision: int = 0
    latest_revision: int = 0
    serial: str | None = Field(default=None, max_length=64)
    fingerprint_sha256: str | None = Field(default=None, max_length=64)
    not_before: datetime | None = _dt()
    not_after: datetime | None = _dt()
    renewal_due_at: datetime | None = _dt()
    # RFC 9773 section 4.3: when to ask the ACME server for the renewal window again.
    ari_next_fetch_at: datetime | None = _dt()
    acm_arn: str | None = Field(default=None, max_length=2048)
    acm_status: str | None = Field(default=None, max_length=32)
    acm_type: str | None = Field(default=None, max_length=32)
    in_use_by: str | None = _text()
    drift: str | None = _text()
    claimed_by: str | None = Field(default=None, max_length=255)
    claimed_until: datetime | None = _dt()
    failures: int = 0
    next_attempt_at: datetime | None = _dt()
    last_error: str | None = _text()
    created_at: datetime | None = _dt(nullable=False)
    updated_at: datetime | None = _dt(nullable=False)


class ManagedCertificate(CertificateBase, table=True):
    __tablename__ = "certificate"
    __table_args__ = (
        UniqueConstraint("name", name="uq_certificate_name"),
        # The scheduler's queries, run every tick (DESIGN.md "Inventory").
        Index("ix_certificate_status_due", "status", "renewal_due_at"),
        Index("ix_certificate_status_not_after", "status", "not_after"),
        Index("ix_certificate_status_ari", "status", "ari_next_fetch_at"),
    )

    id: int | None = Field(default=None, primary_key=True)


class Revision(SQLModel, table=True):
    """One issuance of a certificate, walked through persisted states."""

    __tablename__ = "revision"
    __table_args__ = (
        UniqueConstraint("certificate_id", "number", name="uq_revision_number"),
        Index("ix_revision_state", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    certificate_id: int = Field(foreign_key="certificate.id", index=True)
    number: int
    state: str = Field(default="planned", max_length=16)
    reason: str = Field(default="", max_length=64)
    key_type: str = Field(max_length=16)
    sealed_key: str | None = _text()
    order_url: str | None = _text()
    certificate_pem: str | None = _text()
    chain_pem: str | None = _text()
    # Chosen before signing (key_sealed) by an issuer that plans, so a resume re-signs the
    # same certificate; otherwise read from the certificate once it is issued.
    serial: str | None = Field(default=None, max_length=64)
    fingerprint_sha256: str | None = Field(default=None, max_length=64)
    not_before: datetime | None = _dt()
    not_after: datetime | None = _dt()
    archive_location: str | None = _text()
    archive_sha256: str | None = Field(default=None, max_length=64)
    archive_extra: str | None = _text()
    deploy_state: str | None = _text()
    retry_after: datetime | None = _dt()
    error: str | None = _text()
    created_at: datetime | None = _dt(nullable=False)
    updated_at: datetime | None = _dt(nullable=False)


class Authority(SQLModel, table=True):
    """A private CA: root and intermediate, their keys sealed, and its signing policy."""

    __tablename__ = "authority"
    __table_args__ = (UniqueConstraint("name", name="uq_authority_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    key_type: str = Field(max_length=16)
    common_name: str = Field(max_length=255)
    policy: str = Field(default="{}", sa_column=Column(Text(), nullable=False))
    root_certificate_pem: str = Field(sa_column=Column(Text(), nullable=False))
    root_sealed_key: str = Field(sa_column=Column(Text(), nullable=False))
    intermediate_certificate_pem: str = Field(sa_column=Column(Text(), nullable=False))
    intermediate_sealed_key: str = Field(sa_column=Column(Text(), nullable=False))
    crl_number: int = 0
    created_at: datetime | None = _dt(nullable=False)


class Revocation(SQLModel, table=True):
    """A revoked certificate (any issuer); private CAs build their CRL from these rows."""

    __tablename__ = "revocation"
    __table_args__ = (UniqueConstraint("issuer", "serial", name="uq_revocation_serial"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=255, index=True)
    serial: str = Field(max_length=64)
    certificate_name: str = Field(max_length=255)
    revision: int
    reason: str = Field(max_length=32)
    revoked_at: datetime | None = _dt(nullable=False)


class AuditEvent(SQLModel, table=True):
    """One append-only audit record, chained to the one before it (HMAC, or SHA-256 before
    the audit key existed)."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime | None = _dt(nullable=False)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=255)
    actor: str = Field(default="", max_length=255)
    details: str = Field(default="{}", sa_column=Column(Text(), nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditKey(SQLModel, table=True):
    """The audit chain's HMAC key, sealed by the key wrapper; events from first_seq on use it.

    ``first_seq`` is also the sealed key's context revision, so moving the boundary (to pass
    keyed events off as older, unkeyed ones) makes the key fail to unseal.
    """

    __tablename__ = "audit_key"

    first_seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    sealed_key: str = Field(sa_column=Column(Text(), nullable=False))
    created_at: datetime | None = _dt(nullable=False)


class InstanceLock(SQLModel, table=True):
    """Who holds a named lock (e.g. the single `certman serve` allowed on SQLite), until when."""

    __tablename__ = "instance_lock"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=255)
    expires_at: datetime | None = _dt(nullable=False)


class AcmeAccount(SQLModel, table=True):
    """An ACME account per issuer and directory; its key is sealed like every other key."""

    __tablename__ = "acme_account"
    __table_args__ = (UniqueConstraint("issuer", "directory", name="uq_acme_account"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=255)
    directory: str = Field(sa_column=Column(Text(), nullable=False))
    account_url: str | None = _text()
    key_type: str = Field(max_length=16)
    sealed_key: str = Field(sa_column=Column(Text(), nullable=False))
    contact: str | None = _text()
    eab_kid: str | None = Field(default=None, max_length=255)
    status: str = Field(default="pending", max_length=16)
    retry_after: datetime | None = _dt()
    created_at: datetime | None = _dt(nullable=False)
    updated_at: datetime | None = _dt(nullable=False)


class Notification(SQLModel, table=True):
    """A notice, recorded before it is sent (the outbox) and marked sent channel by channel.

    (certificate, kind, key) is unique, so a notice is recorded, and sent, once. ``pending``
    names the channels that have not accepted it yet ("webhook,sns"); while any are left,
    ``next_attempt_at`` says when to try them again (``failures`` times failed so far).
    """

    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("certificate", "kind", "key", name="uq_notification"),)

    id: int | None = Field(default=None, primary_key=True)
    certificate: str = Field(max_length=255)
    kind: str = Field(max_length=32)
    key: str = Field(max_length=255)
    created_at: datetime | None = _dt()
    # When the last pending channel accepted it; NULL with nothing pending: given up (its
    # channels were taken out of the configuration).
    sent_at: datetime | None = _dt()
    payload: str | None = _text()  # the JSON body, exactly as every channel gets it
    pending: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = _dt(index=True)
    last_error: str | None = _text()
