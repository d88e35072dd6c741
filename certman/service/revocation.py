"""Revoking a certificate: at the issuer when it supports it, and always in the inventory."""

from __future__ import annotations

from sqlmodel import select

from certman.errors import ValidationError
from certman.interfaces import RevokeRequest, SupportsRevoke
from certman.inventory.audit import append_event
from certman.inventory.tables import Revision, Revocation
from certman.models import RevisionState, RevocationReason
from certman.service.lifecycle import get_certificate
from certman.service.runtime import Runtime
from certman.service.steps import unseal_private_key


def revoke_certificate(rt: Runtime, name: str, reason: RevocationReason) -> Revocation:
    """Revoke the certificate's active revision; a private CA lists it in its next CRL."""
    now = rt.clock.now()
    with rt.session() as session:
        cert = get_certificate(session, name)
        if cert.status == "revoked":
            raise ValidationError(f"Certificate {name!r} is already revoked.")
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert.id)
            .where(Revision.number == cert.current_revision)
        ).first()
        if rev is None or rev.certificate_pem is None or rev.serial is None:
            raise ValidationError(f"Certificate {name!r} has no issued revision to revoke.")
        cert_pem = rev.certificate_pem.encode()
        issuer_name = cert.issuer
        serial = rev.serial
        issued = rev
    issuer = rt.issuer(issuer_name)
    revoked_at = now
    if isinstance(issuer, SupportsRevoke):
        revoked_at = issuer.revoke(
            RevokeRequest(
                certificate_pem=cert_pem,
                reason=reason,
                now=now,
                certificate_key=lambda: unseal_private_key(rt, name, issued),
            )
        ).revoked_at
    with rt.session() as session:
        cert = get_certificate(session, name)
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert.id)
            .where(Revision.number == cert.current_revision)
        ).one()
        record = Revocation(
            issuer=issuer_name,
            serial=serial,
            certificate_name=name,
            revision=rev.number,
            reason=reason.value,
            revoked_at=revoked_at,
        )
        rev.state = RevisionState.REVOKED
        rev.updated_at = now
        cert.status = "revoked"
        cert.next_attempt_at = None
        cert.updated_at = now
        session.add_all([record, rev, cert])
        append_event(
            session,
            now,
            "certificate.revoke",
            name,
            revision=rev.number,
            serial=serial,
            reason=reason.value,
            issuer=issuer_name,
        )
        session.commit()
        return record
