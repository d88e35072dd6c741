"""The inventory's facts about each certificate, checked against the certificate itself.

The certificate row's serial, validity, fingerprint and renewal time decide what renews
and when, but they are copies: an UPDATE (or a bug) that moves ``not_after`` to 2099
makes every query believe it. The certificate of the current revision is what was
issued; the audit trail's activation event (``certificate.issue``/``certificate.renew``,
chained under the audit key) says which certificate that was. So: parse the stored
certificate, compare it with both rows and with the audit trail, and re-derive the facts
from it where the audit trail vouches for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from certman.contracts import supports
from certman.contracts.issuer import SupportsRenewalInfo
from certman.errors import CertmanError
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus
from certman.service.renewal import renewal_due_at
from certman.service.runtime import Runtime

# Read and compared this many certificates at a time (keyset pages on certificate.id).
PAGE = 1000
_ACTIVATIONS = ("certificate.issue", "certificate.renew", "certificate.delete")
CERT = ManagedCertificate.__table__  # type: ignore[attr-defined]
REV = Revision.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class CertifiedFacts:
    """What the stored certificate of a revision says about itself."""

    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, kw_only=True)
class FieldDrift:
    """One stored fact that is not what the certificate says (``where``: which row)."""

    where: str  # "certificate" (the certificate row) or "revision N" (the revision row)
    field: str
    stored: str
    certified: str


@dataclass(frozen=True, kw_only=True)
class FactDrift:
    """A certificate whose stored facts disagree with its certificate or the audit trail."""

    name: str
    certificate_id: int
    revision: int
    fields: tuple[FieldDrift, ...]
    # The stored certificate is not the one the audit trail recorded (or cannot be read):
    # the facts cannot be re-derived from it.
    untrusted: str | None = None
    facts: CertifiedFacts | None = None
    renewal_due_at: datetime | None = None  # re-derived from facts and policy

    def describe(self) -> str:
        parts = [
            f"{d.where} {d.field} is {d.stored}, the certificate says {d.certified}"
            for d in self.fields
        ]
        if self.untrusted:
            parts.append(self.untrusted)
        return f"{self.name}: " + "; ".join(parts) + "."


def certified_facts(pem: str) -> CertifiedFacts:
    """Only what is compared: no public key, no extensions (parsed lazily by cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(pem.encode())
    return CertifiedFacts(
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else "empty"


def _text(value: object) -> str:
    if isinstance(value, datetime) or value is None:
        return _iso(value)
    return str(value)


@dataclass
class _RenewalPolicy:
    """Whether an issuer may move renewal times inside the CA's ARI window (RFC 9773)."""

    rt: Runtime
    _ari: dict[str, bool] | None = None

    def follows_ari(self, issuer: str) -> bool:
        if self._ari is None:
            self._ari = {}
        if issuer not in self._ari:
            try:
                self._ari[issuer] = supports(self.rt.issuer(issuer), SupportsRenewalInfo)
            except CertmanError:  # an issuer that cannot be built: allow the window's range
                self._ari[issuer] = True
        return self._ari[issuer]


def expected_renewal(facts: CertifiedFacts, renew_before_seconds: int | None) -> datetime:
    """The pure renewal time (certman.service.renewal) of the certificate as issued."""
    renew_before = timedelta(seconds=renew_before_seconds) if renew_before_seconds else None
    return renewal_due_at(
        not_before=facts.not_before, not_after=facts.not_after, renew_before=renew_before
    )


def _renewal_drift(
    stored: datetime | None, facts: CertifiedFacts, expected: datetime, follows_ari: bool
) -> FieldDrift | None:
    """A renewal time later than the certificate and the policy allow (or none at all).

    Earlier is not drift: it renews sooner, which an operator may ask for (an UPDATE to
    renew a batch now), and a renewal then writes the policy's time again. Later is what
    lets a certificate lapse.
    """
    # With ARI, a random point in the CA's window, which lies inside the validity.
    latest = facts.not_after if follows_ari else expected
    if stored is not None and stored <= latest:
        return None
    return FieldDrift(
        where="certificate",
        field="renewal_due_at",
        stored=_iso(stored),
        certified=f"{_iso(latest)} at the latest",
    )


def activation_records(session: Session, *, page: int = 5000) -> dict[str, dict[str, Any]]:
    """Per certificate name, the details of its latest issue/renew event (one pass, paged)."""
    records: dict[str, dict[str, Any]] = {}
    after = 0
    while True:
        rows = session.exec(
            select(AuditEvent.seq, AuditEvent.action, AuditEvent.subject, AuditEvent.details)
            .where(col(AuditEvent.seq) > after)
            .where(col(AuditEvent.action).in_(_ACTIVATIONS))
            .order_by(col(AuditEvent.seq))
            .limit(page)
        ).all()
        if not rows:
            return records
        for seq, action, subject, details in rows:
            after = seq
            if action == "certificate.delete":
                records.pop(subject, None)
                continue
            try:
                records[subject] = json.loads(details)
            except ValueError:  # the chain check reports a damaged event
                records.pop(subject, None)


def _audit_disagrees(
    record: dict[str, Any] | None, revision: int, facts: CertifiedFacts
) -> str | None:
    if record is None or record.get("revision") != revision:
        return None  # no activation recorded for it (older homes): nothing to hold against
    recorded = {
        "fingerprint_sha256": record.get("fingerprint_sha256"),
        "serial": record.get("serial"),
        "not_after": record.get("not_after"),
    }
    actual = {
        "fingerprint_sha256": facts.fingerprint_sha256,
        "serial": facts.serial,
        "not_after": facts.not_after.isoformat(),
    }
    for field, value in recorded.items():
        if value and value != actual[field]:
            return (
                f"the certificate stored for revision {revision} is not the one issued "
                f"(its {field} is {_text(actual[field])}, the audit trail recorded {value}): "
                "restore it from the archive (`certman archive verify` checks the bundle)"
            )
    return None


def _rows(session: Session, after: int, size: int, *, suspect_only: bool = False) -> list[Any]:
    query = _ROWS.where(CERT.c.id > after).order_by(CERT.c.id).limit(size)
    if suspect_only:
        query = (
            query.where(_SUSPECT)
            .where(CERT.c.status == CertificateStatus.ACTIVE)
            .where(REV.c.certificate_pem.is_not(None))  # a copy without revisions (simulate)
        )
    return list(session.execute(query).all())


_ROWS = (
    core_select(
        CERT.c.id,
        CERT.c.name,
        CERT.c.issuer,
        CERT.c.current_revision,
        CERT.c.renew_before_seconds,
        CERT.c.serial,
        CERT.c.fingerprint_sha256,
        CERT.c.not_before,
        CERT.c.not_after,
        CERT.c.renewal_due_at,
        REV.c.serial.label("rev_serial"),
        REV.c.fingerprint_sha256.label("rev_fingerprint_sha256"),
        REV.c.not_before.label("rev_not_before"),
        REV.c.not_after.label("rev_not_after"),
        REV.c.certificate_pem,
    )
    .select_from(
        CERT.outerjoin(
            REV,
            (REV.c.certificate_id == CERT.c.id) & (REV.c.number == CERT.c.current_revision),
        )
    )
    .where(CERT.c.source == "managed")
    .where(CERT.c.current_revision > 0)
)
# What SQL alone can tell: the certificate row disagrees with its revision row, or renews
# after the revision's expiry. Cheap enough for every `renew --due`; the full check (the
# certificate parsed, the audit trail) is doctor's and the service preflight's.
_SUSPECT = or_(
    *(
        CERT.c[name].is_distinct_from(REV.c[name])
        for name in ("serial", "fingerprint_sha256", "not_before", "not_after")
    ),
    CERT.c.renewal_due_at.is_(None),
    CERT.c.renewal_due_at > REV.c.not_after,
)


_COMPARED = ("serial", "fingerprint_sha256", "not_before", "not_after")


def find_drift(rt: Runtime, *, page: int = PAGE, suspect_only: bool = False) -> Iterator[FactDrift]:
    """Every managed certificate with a current revision whose stored facts drifted.

    Streams the certificates in keyset pages joined with their current revision; parses
    each stored certificate once (serial, validity, fingerprint only).
    """
    policy = _RenewalPolicy(rt)
    audit: dict[str, dict[str, Any]] | None = None
    after = 0
    while True:
        with rt.session() as session:
            rows = _rows(session, after, page, suspect_only=suspect_only)
        if not rows:
            return
        if audit is None:  # read once, and only when there is something to compare
            with rt.session() as session:
                audit = activation_records(session)
        for row in rows:
            after = row.id
            drift = _drift_of(row, audit.get(row.name), policy)
            if drift is not None:
                yield drift


def _drift_of(row: Any, record: dict[str, Any] | None, policy: _RenewalPolicy) -> FactDrift | None:
    number = row.current_revision
    if not row.certificate_pem:
        return FactDrift(
            name=row.name,
            certificate_id=row.id,
            revision=number,
            fields=(),
            untrusted=f"revision {number} has no stored certificate",
        )
    try:
        facts = certified_facts(row.certificate_pem)
    except ValueError:
        return FactDrift(
            name=row.name,
            certificate_id=row.id,
            revision=number,
            fields=(),
            untrusted=f"the certificate stored for revision {number} cannot be parsed",
        )
    fields: list[FieldDrift] = []
    for where, prefix in (("certificate", ""), (f"revision {number}", "rev_")):
        for name in _COMPARED:
            stored, certified = getattr(row, prefix + name), getattr(facts, name)
            if stored != certified:
                fields.append(
                    FieldDrift(
                        where=where, field=name, stored=_text(stored), certified=_text(certified)
                    )
                )
    expected = expected_renewal(facts, row.renew_before_seconds)
    renewal = _renewal_drift(row.renewal_due_at, facts, expected, policy.follows_ari(row.issuer))
    if renewal is not None:
        fields.append(renewal)
    untrusted = _audit_disagrees(record, number, facts)
    if not fields and untrusted is None:
        return None
    return FactDrift(
        name=row.name,
        certificate_id=row.id,
        revision=number,
        fields=tuple(fields),
        untrusted=untrusted,
        facts=facts,
        renewal_due_at=expected,
    )


def certified_values(drift: FactDrift) -> dict[str, Any]:
    """The facts both rows should hold, as the certificate says them."""
    facts = drift.facts
    assert facts is not None
    return {
        "serial": facts.serial,
        "fingerprint_sha256": facts.fingerprint_sha256,
        "not_before": facts.not_before,
        "not_after": facts.not_after,
    }


def _renewal_values(drift: FactDrift) -> dict[str, Any]:
    """The renewal time to write: the policy's, when it or the validity it follows drifted."""
    moved = any(
        d.field == "renewal_due_at" or (d.where == "certificate" and d.field in _VALIDITY)
        for d in drift.fields
    )
    return {"renewal_due_at": drift.renewal_due_at} if moved else {}


_VALIDITY = ("not_before", "not_after")


def corrected_rows(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Per certificate name, the certificate-row values its certificate vouches for, where
    SQL alone shows the row to have drifted (`certman simulate` starts from these)."""
    return {
        drift.name: dict(certified_values(drift), **_renewal_values(drift))
        for drift in find_drift(rt, suspect_only=True)
        if drift.untrusted is None and drift.facts is not None and drift.fields
    }


def restore_facts(rt: Runtime, drifts: Iterable[FactDrift]) -> list[str]:
    """Re-derive the drifted facts from the certificate the audit trail vouches for.

    Rewrites the certificate row (serial, validity, fingerprint, renewal time from the
    policy; an ARI issuer's window is asked again at once) and the revision row, each
    with a ``certificate.facts_restored`` audit event naming what changed. Certificates
    that cannot be trusted are left as they are (the caller reports them). Returns the
    names restored.
    """
    from certman.inventory.audit import append_event

    restored: list[str] = []
    for drift in drifts:
        facts = drift.facts
        if drift.untrusted is not None or facts is None or not drift.fields:
            continue
        now = rt.clock.now()
        values = certified_values(drift)
        with rt.session() as session:
            cert_values = dict(values, **_renewal_values(drift), updated_at=now)
            if "renewal_due_at" in cert_values:
                cert_values["ari_next_fetch_at"] = now  # ask the CA's window again, if any
            changed = session.execute(
                update(CERT)
                .where(CERT.c.id == drift.certificate_id)
                .where(CERT.c.current_revision == drift.revision)
                .values(**cert_values)
            ).rowcount  # type: ignore[attr-defined]
            if not changed:  # renewed or deleted meanwhile: its new facts are its own
                session.rollback()
                continue
            session.execute(
                update(REV)
                .where(REV.c.certificate_id == drift.certificate_id)
                .where(REV.c.number == drift.revision)
                .values(**values)
            )
            append_event(
                session,
                now,
                "certificate.facts_restored",
                drift.name,
                revision=drift.revision,
                fields={
                    f"{d.where} {d.field}": {"was": d.stored, "now": d.certified}
                    for d in drift.fields
                },
            )
            session.commit()
        restored.append(drift.name)
    return restored


def due_by_their_certificates(rt: Runtime) -> list[str]:
    """Active certificates whose rows SQL alone shows to have drifted (one indexed join,
    only those parsed) and which their own certificate says are due now.

    For every `renew --due` and service tick: the due query trusts ``renewal_due_at``, so
    a row whose renewal time or expiry was moved out would never be offered. A stored
    certificate the audit trail does not vouch for is left to doctor and the preflight.
    """
    now = rt.clock.now()
    return [
        drift.name
        for drift in find_drift(rt, suspect_only=True)
        if drift.untrusted is None
        and drift.renewal_due_at is not None
        and drift.renewal_due_at <= now
    ]


def checked_renewal_due(rt: Runtime, session: Session, cert: ManagedCertificate) -> datetime | None:
    """``cert.renewal_due_at`` if its certificate confirms it, else what the policy derives.

    For one renewal decision (`renew NAME`): one parse of the current revision's
    certificate, so a renewal time or validity moved in the database does not postpone it.
    """
    stored = cert.renewal_due_at
    if not cert.current_revision or cert.id is None:
        return stored
    pem = session.exec(
        select(Revision.certificate_pem)
        .where(Revision.certificate_id == cert.id)
        .where(Revision.number == cert.current_revision)
    ).first()
    if not pem:
        return stored
    try:
        facts = certified_facts(pem)
    except ValueError:
        return stored
    expected = expected_renewal(facts, cert.renew_before_seconds)
    follows_ari = _RenewalPolicy(rt).follows_ari(cert.issuer)
    if _renewal_drift(stored, facts, expected, follows_ari) is None:
        return stored
    return expected
