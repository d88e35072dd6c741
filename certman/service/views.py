"""What `certman list` and `certman show` report about certificates."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from certman.errors import ValidationError
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus
from certman.service.lifecycle import get_certificate
from certman.service.steps import targets_of


def effective_status(cert: ManagedCertificate, now: datetime) -> str:
    """The stored status, except that an active certificate past not_after is "expired"."""
    if (
        cert.status == CertificateStatus.ACTIVE
        and cert.not_after is not None
        and cert.not_after <= now
    ):
        return CertificateStatus.EXPIRED.value
    return cert.status


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def certificate_view(cert: ManagedCertificate, now: datetime) -> dict[str, Any]:
    return {
        "name": cert.name,
        "domains": json.loads(cert.domains),
        "issuer": cert.issuer,
        "status": effective_status(cert, now),
        "key_type": cert.key_type,
        "serial": cert.serial,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "not_before": _iso(cert.not_before),
        "not_after": _iso(cert.not_after),
        "renewal_due_at": _iso(cert.renewal_due_at),
        "revision": cert.current_revision,
        "acm_arn": cert.acm_arn,
        "source": cert.source,
        "acm_status": cert.acm_status,
        "acm_type": cert.acm_type,
        "in_use_by": json.loads(cert.in_use_by) if cert.in_use_by else [],
        "drift": cert.drift,
        "targets": targets_of(cert),
        "failures": cert.failures,
        "next_attempt_at": _iso(cert.next_attempt_at),
        "last_error": cert.last_error,
    }


def revision_view(rev: Revision) -> dict[str, Any]:
    return {
        "revision": rev.number,
        "state": rev.state,
        "reason": rev.reason,
        "key_type": rev.key_type,
        "serial": rev.serial,
        "fingerprint_sha256": rev.fingerprint_sha256,
        "not_before": _iso(rev.not_before),
        "not_after": _iso(rev.not_after),
        "archive": rev.archive_location,
        "order_url": rev.order_url,
        "error": rev.error,
        "created_at": _iso(rev.created_at),
    }


def list_certificates(
    session: Session,
    now: datetime,
    *,
    expiring: timedelta | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    query = select(ManagedCertificate)
    if status is not None:
        valid = [s.value for s in CertificateStatus]
        if status not in valid:
            raise ValidationError(f"Unknown status {status!r}; use one of: {', '.join(valid)}.")
        if status == CertificateStatus.EXPIRED:
            query = query.where(ManagedCertificate.status == CertificateStatus.ACTIVE).where(
                col(ManagedCertificate.not_after) <= now
            )
        elif status == CertificateStatus.ACTIVE:
            query = query.where(ManagedCertificate.status == CertificateStatus.ACTIVE).where(
                col(ManagedCertificate.not_after) > now
            )
        else:
            query = query.where(ManagedCertificate.status == status)
    if expiring is not None:
        query = query.where(col(ManagedCertificate.not_after) <= now + expiring)
    query = query.order_by(col(ManagedCertificate.not_after), col(ManagedCertificate.name))
    return [certificate_view(c, now) for c in session.exec(query).all()]


def show_certificate(session: Session, name: str, now: datetime) -> dict[str, Any]:
    cert = get_certificate(session, name)
    view = certificate_view(cert, now)
    revisions = session.exec(
        select(Revision).where(Revision.certificate_id == cert.id).order_by(col(Revision.number))
    ).all()
    view["revisions"] = [revision_view(r) for r in revisions]
    view["renew_before"] = cert.renew_before_seconds
    view["validity_seconds"] = cert.validity_seconds
    return view
