"""Health checks: `certman archive verify`, `certman audit verify` and `certman doctor`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, func, select

from certman.contracts.archive import ArchiveGetRequest, ArchiveRef
from certman.contracts.issuer import SupportsPreflight
from certman.contracts.key_wrapper import SupportsVersions
from certman.errors import CertmanError
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.keywrap.dispatch import sealing_wrapper
from certman.lifecycle.states import CertificateStatus
from certman.service.runtime import Runtime

if TYPE_CHECKING:
    from certman.service.facts import FactDrift


@dataclass(frozen=True, kw_only=True)
class Check:
    area: str
    ok: bool
    message: str
    warning: bool = False


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, area: str, ok: bool, message: str, *, warning: bool = False) -> None:
        self.checks.append(Check(area=area, ok=ok, message=message, warning=warning))

    def run(self, area: str, fn: Callable[[], str]) -> bool:
        """Run one check; a certman error becomes a failed line instead of stopping the rest."""
        try:
            self.add(area, True, fn())
            return True
        except CertmanError as e:
            self.add(area, False, e.message)
            return False


def verify_archive(rt: Runtime, report: CheckReport | None = None) -> CheckReport:
    """Every archived revision: bundle present, SHA-256 intact, decrypts, matches the inventory."""
    from certman.archive.bundle import open_bundle

    report = report or CheckReport()
    checked = 0
    with rt.session() as session:
        rows = session.exec(
            select(Revision, ManagedCertificate.name)
            .join(ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id))
            .where(col(Revision.archive_location).is_not(None))
            .order_by(col(Revision.id))
        ).all()
    for rev, name in rows:
        assert rev.archive_location and rev.archive_sha256
        extra = json.loads(rev.archive_extra) if rev.archive_extra else {}
        ref = ArchiveRef(location=rev.archive_location, sha256=rev.archive_sha256, extra=extra)
        where = f"{name} revision {rev.number}"
        try:
            body = rt.archive.get(ArchiveGetRequest(ref=ref)).body
            bundle = open_bundle(rt.key_wrapper, body, name=name, revision=rev.number)
        except CertmanError as e:
            report.add("archive", False, f"{where}: {e.message}")
            continue
        if bundle.certificate_pem.decode().strip() != (rev.certificate_pem or "").strip():
            report.add(
                "archive", False, f"{where}: the archived certificate differs from the inventory."
            )
            continue
        checked += 1
    if not any(c.area == "archive" and not c.ok for c in report.checks):
        report.add("archive", True, f"{checked} archived bundles present, intact and readable.")
    return report


def verify_audit(rt: Runtime) -> str:
    from certman.errors import IntegrityError
    from certman.inventory.audit import verify_chain

    with rt.session() as session:
        result = verify_chain(session)
    if not result.ok:
        raise IntegrityError(result.message)
    return result.message


def run_doctor(rt: Runtime) -> CheckReport:
    """Config, database, keys, archive, CAs and certificates; never changes anything."""
    report = CheckReport()
    report.add("config", True, _config_line(rt))
    if not report.run("database", lambda: _check_database(rt)):
        return report
    _check_permissions(rt, report)
    if not report.run("keys", lambda: _check_keys(rt)):
        return report
    check_authorities(rt, report)
    check_backends(rt, report)
    verify_archive(rt, report)
    report.run("audit", lambda: verify_audit(rt))
    check_facts(rt, report)
    check_sealed_keys(rt, report)
    _check_certificates(rt, report)
    check_leases(rt, report)
    return report


def _config_line(rt: Runtime) -> str:
    where = str(rt.config.path) if rt.config.file_exists else f"defaults ({rt.config.path} absent)"
    return f"configuration loaded from {where}."


def _check_database(rt: Runtime) -> str:
    with rt.session() as session:
        count = session.exec(select(func.count()).select_from(ManagedCertificate)).one()
    return f"{rt.engine.dialect.name} database at schema head, {count} certificates."


def _check_permissions(rt: Runtime, report: CheckReport) -> None:
    from certman.service.home import exposure_warnings

    warnings = exposure_warnings(rt.config)
    for warning in warnings:
        report.add("permissions", True, warning, warning=True)
    if not warnings:
        report.add("permissions", True, "the home and the database are private to their owner.")


def _check_keys(rt: Runtime) -> str:
    wrapper = rt.key_wrapper
    path = rt.config.master_key_path
    if wrapper.wrapper_type == "local" and path.exists():
        mode = os.stat(path).st_mode & 0o777
        sealing = sealing_wrapper(wrapper)
        fingerprint = sealing.fingerprint() if isinstance(sealing, SupportsVersions) else "?"
        return f"local master key {path} (mode {mode:o}, active fingerprint {fingerprint})."
    return f"key wrapper {wrapper.wrapper_type} ready."


def _signs_for(key: object, certificate: object) -> bool:
    """Does ``key`` sign what ``certificate``'s public key verifies? (One real signature.)"""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from certman.pki import signature_hash_for

    probe = b"certman doctor: can this CA still sign?"
    public = certificate.public_key()  # type: ignore[attr-defined]
    digest = signature_hash_for(key)
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
            public, ec.EllipticCurvePublicKey
        ):
            public.verify(key.sign(probe, ec.ECDSA(digest)), probe, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey):
            public.verify(
                key.sign(probe, padding.PKCS1v15(), digest), probe, padding.PKCS1v15(), digest
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def check_authorities(rt: Runtime, report: CheckReport) -> None:
    from cryptography import x509

    from certman.ca import SigningPolicy
    from certman.service.ca_keys import ca_private_key, key_store_of

    now = rt.clock.now()
    with rt.session() as session:
        authorities = session.exec(select(Authority).order_by(col(Authority.name))).all()
    for row in authorities:
        area = f"ca {row.name}"
        inter = x509.load_pem_x509_certificate(row.intermediate_certificate_pem.encode())
        try:
            key = ca_private_key(rt, row, "intermediate")
            signs = _signs_for(key, inter)
        except CertmanError as e:
            report.add(area, False, f"intermediate key cannot be unsealed: {e.message}")
            continue
        if not signs:
            report.add(area, False, "intermediate key does not match its certificate.")
            continue
        works = "key unseals" if key_store_of(row) == "sealed" else "key in the HSM signs"
        policy = SigningPolicy.from_dict(json.loads(row.policy))
        left = inter.not_valid_after_utc - now
        if left <= timedelta(0):
            report.add(area, False, "the intermediate certificate has expired; create a new CA.")
        elif left < policy.max_validity:
            report.add(
                area,
                True,
                f"{works}; the intermediate expires {inter.not_valid_after_utc:%Y-%m-%d}, "
                "before a maximum-validity leaf would: longer leaves are refused from now on; "
                "create a new CA soon.",
                warning=True,
            )
        else:
            report.add(
                area,
                True,
                f"{works}; intermediate valid until {inter.not_valid_after_utc:%Y-%m-%d}.",
            )
        stranded = _outlived_leaves(rt, row.name, inter.not_valid_after_utc)
        if stranded:
            report.add(
                area,
                False,
                f"the intermediate expires {inter.not_valid_after_utc:%Y-%m-%d}, before the next "
                f"renewal of {', '.join(stranded[:5])}{' ...' if len(stranded) > 5 else ''} "
                "would end: the CA will refuse it; create a new CA and move them to it.",
            )


def _outlived_leaves(rt: Runtime, ca: str, ca_not_after: datetime) -> list[str]:
    """Managed certificates of CA ``ca`` whose next renewal would outlive the CA."""
    issuers = {ca} | {
        name
        for name, body in rt.config.issuers.items()
        if body.get("type") == "private-ca" and str(body.get("ca") or name) == ca
    }
    now = rt.clock.now()
    with rt.session() as session:
        rows = session.exec(
            select(
                ManagedCertificate.name,
                ManagedCertificate.renewal_due_at,
                ManagedCertificate.validity_seconds,
            )
            .where(ManagedCertificate.source == "managed")
            .where(col(ManagedCertificate.issuer).in_(issuers))
            .where(
                col(ManagedCertificate.status).in_(
                    [CertificateStatus.ACTIVE, CertificateStatus.FAILED]
                )
            )
        ).all()
    return sorted(
        name
        for name, due, seconds in rows
        if max(due or now, now) + timedelta(seconds=seconds) > ca_not_after
    )


def _check_certificates(rt: Runtime, report: CheckReport) -> None:
    now = rt.clock.now()
    with rt.session() as session:
        failed = session.exec(
            select(ManagedCertificate.name).where(
                ManagedCertificate.status == CertificateStatus.FAILED
            )
        ).all()
        expired = session.exec(
            select(ManagedCertificate.name)
            .where(ManagedCertificate.status == CertificateStatus.ACTIVE)
            .where(col(ManagedCertificate.not_after) <= now)
        ).all()
        overdue = session.exec(
            select(ManagedCertificate.name)
            .where(ManagedCertificate.status == CertificateStatus.ACTIVE)
            .where(col(ManagedCertificate.renewal_due_at) <= now)
        ).all()
    if failed:
        report.add("certificates", False, f"renewal failed for: {', '.join(failed)}.")
    if expired:
        report.add("certificates", False, f"expired: {', '.join(expired)}.")
    if overdue:
        report.add(
            "certificates",
            True,
            f"due for renewal: {', '.join(overdue)} (run `certman renew --due`).",
            warning=True,
        )
    if not (failed or expired or overdue):
        report.add("certificates", True, "no certificate failed, expired or overdue.")


# At most this many drifted certificates are named one by one; the rest are counted.
SHOWN = 20


def check_facts(rt: Runtime, report: CheckReport, *, restore: bool = False) -> list[FactDrift]:
    """The inventory's serial, validity, fingerprint and renewal time of every certificate,
    against its stored certificate and the audit trail (certman.service.facts).

    ``restore`` (the service's preflight): re-derive the facts of those whose certificate
    the audit trail vouches for, with an audit event; each still fails the check, so the
    alert tells that the inventory was changed behind certman's back.
    """
    from certman.service.facts import find_drift, restore_facts

    drifts: list[FactDrift] = []
    for drift in find_drift(rt):
        drifts.append(drift)
    restored = set(restore_facts(rt, drifts)) if restore else set()
    for drift in drifts[:SHOWN]:
        done = " Restored from its certificate." if drift.name in restored else ""
        report.add(f"facts {drift.name}", False, drift.describe() + done)
    if len(drifts) > SHOWN:
        report.add("facts", False, f"and {len(drifts) - SHOWN} more certificates drifted.")
    if not drifts:
        report.add(
            "facts",
            True,
            "every certificate's serial, validity, fingerprint and renewal time match "
            "its certificate.",
        )
    return drifts


# Keys sealed by a remote wrapper (AWS KMS, an HSM) cost one call each to unseal: at most
# this many are tried per check, a random sample of them; the local master key opens all.
REMOTE_SAMPLE = 100


def check_sealed_keys(rt: Runtime, report: CheckReport, *, page: int = 500) -> None:
    """Each current revision's sealed key unseals with its context and is the key its
    certificate certifies. Found here, a damaged or swapped key is fixed by a renewal with
    a new key before a renewal that reuses it, an export or a rollback needs it.

    The plaintext stays in memory, compared and dropped.
    """
    import random

    from sqlalchemy import select as sa_select

    from certman.models import WrappedKey
    from certman.service.steps import key_context

    cert = ManagedCertificate.__table__  # type: ignore[attr-defined]
    rev = Revision.__table__  # type: ignore[attr-defined]
    wrapper = rt.key_wrapper
    checked = failed = 0
    remote: list[tuple[str, int, str, str | None]] = []  # a reservoir sample
    remote_seen = 0
    after = 0
    while True:
        with rt.session() as session:
            rows = session.execute(
                sa_select(
                    cert.c.id, cert.c.name, rev.c.number, rev.c.sealed_key, rev.c.certificate_pem
                )
                .select_from(
                    cert.join(
                        rev,
                        (rev.c.certificate_id == cert.c.id)
                        & (rev.c.number == cert.c.current_revision),
                    )
                )
                .where(cert.c.id > after)
                .where(cert.c.source == "managed")
                .order_by(cert.c.id)
                .limit(page)
            ).all()
        if not rows:
            break
        for cert_id, name, number, sealed, pem in rows:
            assert cert_id is not None
            after = cert_id
            if sealed is None:
                problem: str | None = f"revision {number} has no sealed key"
            else:
                try:
                    kind = WrappedKey.from_json(sealed).wrapper
                except (CertmanError, ValueError, KeyError, TypeError):
                    kind = "local"  # unreadable: _sealed_key_problem says so
                if kind != "local":
                    remote_seen += 1
                    if len(remote) < REMOTE_SAMPLE:
                        remote.append((name, number, sealed, pem))
                    elif (slot := random.randrange(remote_seen)) < REMOTE_SAMPLE:
                        remote[slot] = (name, number, sealed, pem)
                    continue
                problem = _sealed_key_problem(wrapper, sealed, key_context(name, number), pem)
            checked += 1
            failed += _report_key(report, name, number, problem)
    for name, number, sealed, pem in remote:
        checked += 1
        failed += _report_key(
            report,
            name,
            number,
            _sealed_key_problem(wrapper, sealed, key_context(name, number), pem),
        )
    if not failed:
        sampled = (
            f", {len(remote)} of the {remote_seen} sealed by a remote key wrapper "
            "(one unseal call each) sampled"
            if remote_seen > len(remote)
            else ""
        )
        report.add(
            "sealed keys",
            True,
            f"{checked} current sealed keys unseal and match their certificates{sampled}.",
        )


def _report_key(report: CheckReport, name: str, number: int, problem: str | None) -> int:
    if problem is None:
        return 0
    report.add(
        f"sealed key {name}",
        False,
        f"{name} revision {number}: {problem}; renew it with a new key "
        f"(`certman renew {name} --force`, reuse_key off).",
    )
    return 1


def _sealed_key_problem(
    wrapper: object, sealed: str, context: object, certificate_pem: str | None
) -> str | None:
    """Why the sealed key cannot serve its certificate, or None when it can."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from certman.models import EncryptionContext, WrappedKey
    from certman.pki import public_key_der

    assert isinstance(context, EncryptionContext)
    try:
        der = wrapper.unwrap(WrappedKey.from_json(sealed), context)  # type: ignore[attr-defined]
    except CertmanError as e:
        return f"the sealed key cannot be unsealed ({e.message.rstrip('.')})"
    except (ValueError, KeyError, TypeError):
        return "the sealed key record is damaged and cannot be read"
    try:
        # Only its public half is compared: RSA's costly key validation is not needed.
        key = serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        return "the sealed key unseals to something that is not a private key"
    finally:
        del der
    if not certificate_pem:
        return None
    certified = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    if public_key_der(key.public_key()) != public_key_der(certified):  # type: ignore[arg-type]
        return "the sealed key is not the key its certificate certifies"
    return None


def check_backends(rt: Runtime, report: CheckReport) -> None:
    """Preflight of every configured issuer and of the key wrapper ("can we still renew?").

    Issuers that implement SupportsPreflight check themselves (ACME: directory, account,
    DNS credentials); so do the sealing key wrapper and the archive store (AWS KMS: key
    enabled; HSM: a seal and unseal; S3: bucket there and writable).
    """
    now = rt.clock.now()
    for name in sorted(rt.config.issuers):
        area = f"issuer {name}"
        try:
            issuer = rt.issuer(name)
            result = issuer.preflight(now) if isinstance(issuer, SupportsPreflight) else None
        except CertmanError as e:
            report.add(area, False, e.message)
            continue
        for check, ok, message in result.checks if result else ():
            report.add(area, ok, f"{check}: {message}")
    backends: tuple[tuple[str, Callable[[], object]], ...] = (
        ("keys", lambda: sealing_wrapper(rt.key_wrapper)),
        ("archive", lambda: rt.archive),
    )
    for area, backend in backends:
        try:
            built = backend()
            result = built.preflight(now) if isinstance(built, SupportsPreflight) else None
        except CertmanError as e:
            report.add(area, False, e.message)
            continue
        for check, ok, message in result.checks if result else ():
            report.add(area, ok, f"{check}: {message}")


def run_preflight(rt: Runtime, *, restore: bool = False) -> CheckReport:
    """What `certman serve` checks every preflight_interval, long before renewals are due;
    ``restore``: re-derive drifted certificate facts that can be (check_facts)."""
    report = CheckReport()
    check_facts(rt, report, restore=restore)  # first: the CA check reads the renewal times
    check_authorities(rt, report)
    check_backends(rt, report)
    check_sealed_keys(rt, report)
    return report


def check_leases(rt: Runtime, report: CheckReport) -> None:
    """Every live lease: who works on which certificate, until when (a warning when its
    holder no longer runs: the next command or tick takes it over)."""
    from certman.service.leases import held_leases, holder_gone

    leases = held_leases(rt)
    if not leases:
        report.add("leases", True, "no certificate is being worked on.")
        return
    for name, holder, until in leases[:20]:
        when = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        if holder_gone(holder):
            report.add(
                "leases",
                True,
                f"{name}: leased until {when} by {holder}, which no longer runs; the next "
                "command or service tick takes it over.",
                warning=True,
            )
        else:
            report.add("leases", True, f"{name}: being worked on by {holder} until {when}.")
    if len(leases) > 20:
        report.add("leases", True, f"and {len(leases) - 20} more certificates are leased.")
