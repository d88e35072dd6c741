"""Health checks: `certman archive verify`, `certman audit verify` and `certman doctor`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, func, select

from certman.errors import CertmanError
from certman.interfaces import (
    ArchiveGetRequest,
    ArchiveRef,
    SupportsPreflight,
    SupportsVersions,
)
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.keywrap.dispatch import sealing_wrapper
from certman.service.runtime import Runtime


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

    from ca import SigningPolicy
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
            .where(col(ManagedCertificate.status).in_(["active", "failed"]))
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
            select(ManagedCertificate.name).where(ManagedCertificate.status == "failed")
        ).all()
        expired = session.exec(
            select(ManagedCertificate.name)
            .where(ManagedCertificate.status == "active")
            .where(col(ManagedCertificate.not_after) <= now)
        ).all()
        overdue = session.exec(
            select(ManagedCertificate.name)
            .where(ManagedCertificate.status == "active")
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


def run_preflight(rt: Runtime) -> CheckReport:
    """What `certman serve` checks every preflight_interval, long before renewals are due."""
    report = CheckReport()
    check_authorities(rt, report)
    check_backends(rt, report)
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
