"""Revoking a certificate: at the issuer when it supports it, and always in the inventory.

With reason keyCompromise the key is what is revoked, not one certificate: every unexpired
revision that certifies the same key is revoked with it (RFC 5280 section 5.3.1), a renewal
in progress that holds that key is abandoned, and no later renewal reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from certman.contracts.issuer import RevokeRequest, SupportsRevoke
from certman.errors import ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import ManagedCertificate, Revision, Revocation
from certman.lifecycle.states import CertificateStatus, RevisionState, transition
from certman.models import RevocationReason
from certman.service.certificates import get_certificate, revision_of
from certman.service.runtime import Runtime
from certman.service.steps import unseal_private_key

S = RevisionState
KEY_COMPROMISE = RevocationReason.KEY_COMPROMISE


@dataclass(frozen=True, kw_only=True)
class RevokedRevision:
    revision: int
    serial: str
    reason: str
    shares_key: bool  # revoked because it certifies the current revision's key


@dataclass(frozen=True, kw_only=True)
class RevocationOutcome:
    name: str
    reason: RevocationReason
    revoked: tuple[RevokedRevision, ...]  # the current revision first
    abandoned: tuple[int, ...] = ()  # renewals in progress that held the compromised key

    @property
    def serial(self) -> str:
        return self.revoked[0].serial

    def lines(self) -> list[str]:
        """What the operator is told, one line per fact."""
        first = self.revoked[0]
        lines = [f"{self.name}: serial {first.serial} revoked ({first.reason})."]
        lines += [
            f"{self.name}: revision {r.revision} (serial {r.serial}) certifies the same key; "
            "revoked too."
            for r in self.revoked[1:]
        ]
        lines += [
            f"{self.name}: revision {n} in progress held the same key; it was marked failed."
            for n in self.abandoned
        ]
        if self.reason is KEY_COMPROMISE:
            lines.append(
                f"{self.name}: this key is never reused; the next renewal generates a new one."
            )
        return lines


@dataclass(frozen=True, kw_only=True)
class _Target:
    revision: int
    serial: str
    certificate_pem: bytes
    shares_key: bool


def revoke_certificate(rt: Runtime, name: str, reason: RevocationReason) -> RevocationOutcome:
    """Revoke the certificate's current revision (and with keyCompromise, its key).

    The issuer is asked first (idempotent at the CA: revoking twice is not an error), then
    every record is committed at once, so a failure half-way changes nothing here and
    running the command again finishes it. A private CA lists the serials in its next CRL.
    """
    now = rt.clock.now()
    with rt.session() as session:
        cert = get_certificate(session, name)
        if cert.status == CertificateStatus.REVOKED:
            raise ValidationError(f"Certificate {name!r} is already revoked.")
        current = revision_of(session, cert, cert.current_revision)
        if current is None or current.certificate_pem is None or current.serial is None:
            raise ValidationError(f"Certificate {name!r} has no issued revision to revoke.")
        issuer_name = cert.issuer
        targets = [
            _Target(
                revision=current.number,
                serial=current.serial,
                certificate_pem=current.certificate_pem.encode(),
                shares_key=False,
            )
        ]
        abandoned: list[int] = []
        if reason is KEY_COMPROMISE:
            more, abandoned = _sharing_the_key(rt, session, cert, current, now)
            targets += more
    issuer = rt.issuer(issuer_name)
    revoked_at: dict[int, datetime] = {}
    for target in targets:
        revoked_at[target.revision] = now
        if isinstance(issuer, SupportsRevoke):
            revoked_at[target.revision] = issuer.revoke(
                RevokeRequest(
                    certificate_pem=target.certificate_pem,
                    reason=reason,
                    now=now,
                    # each target is the current revision or certifies its key
                    certificate_key=lambda: unseal_private_key(rt, name, current),
                )
            ).revoked_at
    with rt.session() as session:
        cert = get_certificate(session, name)
        for target in targets:
            rev = revision_of(session, cert, target.revision)
            assert rev is not None
            record = session.exec(
                select(Revocation)
                .where(Revocation.issuer == issuer_name)
                .where(Revocation.serial == target.serial)
            ).first() or Revocation(
                issuer=issuer_name,
                serial=target.serial,
                certificate_name=name,
                revision=rev.number,
                reason=reason.value,
                revoked_at=revoked_at[target.revision],
            )
            record.reason = reason.value
            transition(rev, S.REVOKED, now, name=name)
            session.add_all([record, rev])
            details = {"shares_key_with": current.number} if target.shares_key else {}
            append_event(
                session,
                now,
                "certificate.revoke",
                name,
                revision=rev.number,
                serial=target.serial,
                reason=reason.value,
                issuer=issuer_name,
                **details,
            )
        for number in abandoned:
            rev = revision_of(session, cert, number)
            assert rev is not None
            transition(rev, S.FAILED, now, name=name)
            rev.error = "abandoned: its key was revoked for keyCompromise"
            session.add(rev)
            append_event(session, now, "certificate.abandon", name, revision=number)
        cert.status = CertificateStatus.REVOKED
        cert.next_attempt_at = None
        cert.updated_at = now
        session.add(cert)
        session.commit()
    return RevocationOutcome(
        name=name,
        reason=reason,
        revoked=tuple(
            RevokedRevision(
                revision=t.revision, serial=t.serial, reason=reason.value, shares_key=t.shares_key
            )
            for t in targets
        ),
        abandoned=tuple(abandoned),
    )


def _sharing_the_key(
    rt: Runtime,
    session: Session,
    cert: ManagedCertificate,
    current: Revision,
    now: datetime,
) -> tuple[list[_Target], list[int]]:
    """Other revisions holding ``current``'s key: unexpired certificates, renewals under way."""
    from certman.pki import certificate_facts, load_private_key_der, public_key_der

    assert current.certificate_pem is not None
    key = certificate_facts(current.certificate_pem.encode()).public_key_der
    others = session.exec(
        select(Revision)
        .where(Revision.certificate_id == cert.id)
        .where(Revision.number != current.number)
        .order_by(col(Revision.number))
    ).all()
    targets, abandoned = [], []
    for rev in others:
        if rev.certificate_pem:
            facts = certificate_facts(rev.certificate_pem.encode())
            if facts.public_key_der != key or facts.not_after <= now:
                continue
            # One revoked earlier for another reason gets its reason upgraded (RFC 5280
            # section 5.3.1 allows it for keyCompromise), so the CRL says what is true now.
            if _revocation_reason(session, cert.issuer, facts.serial) == KEY_COMPROMISE:
                continue
            targets.append(
                _Target(
                    revision=rev.number,
                    serial=facts.serial,
                    certificate_pem=rev.certificate_pem.encode(),
                    shares_key=True,
                )
            )
        elif S(rev.state).in_flight and rev.sealed_key:
            # A renewal with reuse_key sealed a copy of the key and has not been certified
            # yet: it must never be, so it is stopped; the next renewal starts afresh.
            der = unseal_private_key(rt, cert.name, rev)
            if public_key_der(load_private_key_der(der).public_key()) == key:
                abandoned.append(rev.number)
    return targets, abandoned


def _revocation_reason(session: Session, issuer: str, serial: str) -> RevocationReason | None:
    reason = session.exec(
        select(Revocation.reason)
        .where(Revocation.issuer == issuer)
        .where(Revocation.serial == serial)
    ).first()
    return RevocationReason(reason) if reason else None


def compromised_public_keys(session: Session, cert: ManagedCertificate) -> frozenset[bytes]:
    """The public keys (SPKI DER) of ``cert`` that were revoked for keyCompromise."""
    from certman.pki import certificate_facts

    numbers = session.exec(
        select(Revocation.revision)
        .where(Revocation.certificate_name == cert.name)
        .where(Revocation.reason == KEY_COMPROMISE.value)
    ).all()
    if not numbers:
        return frozenset()
    pems = session.exec(
        select(Revision.certificate_pem)
        .where(Revision.certificate_id == cert.id)
        .where(col(Revision.number).in_(list(numbers)))
    ).all()
    return frozenset(certificate_facts(p.encode()).public_key_der for p in pems if p)
