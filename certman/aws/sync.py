"""`certman acm sync`: every ACM certificate of the region in the inventory, drift flagged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from certman.aws.acm_certs import ACM_KEY_ALGORITHMS, KEY_TYPES, TAG_NAME, acm_serial
from certman.aws.clients import region_of
from certman.aws.errors import aws_call
from certman.errors import OperationError
from certman.inventory.audit import append_event
from certman.inventory.tables import ManagedCertificate, Revision

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

# ACM's KeyAlgorithm in certman's key type words, where certman has one.
_KEY_TYPES = {algorithm: key_type.value for key_type, algorithm in ACM_KEY_ALGORITHMS.items()}
_STATUS = {
    "ISSUED": "active",
    "EXPIRED": "expired",
    "REVOKED": "revoked",
    "FAILED": "failed",
    "PENDING_VALIDATION": "pending",
    "INACTIVE": "failed",
    "VALIDATION_TIMED_OUT": "failed",
}


@dataclass
class SyncReport:
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    drift: dict[str, str] = field(default_factory=dict)


def sync_acm(rt: Runtime, region: str | None = None, *, setting: str = "") -> SyncReport:
    """Mirror every ACM certificate of ``region`` (default [aws] region) in the inventory.

    Unmanaged certificates get (or update) a row with source "acm"; managed ones get their
    ACM status, type and InUseBy, and ``drift`` when ACM no longer holds the serial certman
    deployed, or no longer has the ARN. A certificate tagged ``certman:name`` with the
    name of a managed certificate is that certificate's copy (a target in another region,
    whose ARN is not the one the row keeps): never mirrored as unmanaged, only checked for
    drift. Rows of certificates in other regions are left alone. A malformed ``region`` is
    refused naming ``setting``, the flag or key it came from.
    """
    acm = rt.aws.client("acm", region, setting=setting)
    region = rt.aws.region if region is None else region
    described = {}
    with aws_call("acm:ListCertificates", region, OperationError):
        for page in acm.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": KEY_TYPES}
        ):
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                with aws_call("acm:DescribeCertificate", arn, OperationError):
                    described[arn] = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    with rt.session() as session:
        managed_arns = set(
            session.exec(
                select(ManagedCertificate.acm_arn)
                .where(ManagedCertificate.source == "managed")
                .where(col(ManagedCertificate.acm_arn).is_not(None))
            ).all()
        )
    # Tags only for what the inventory cannot place: one call per such certificate.
    owners = {arn: _certman_name(acm, arn) for arn in described if arn not in managed_arns}
    now = rt.clock.now()
    report = SyncReport()
    with rt.session() as session:
        rows = session.exec(
            select(ManagedCertificate).where(col(ManagedCertificate.acm_arn).is_not(None))
        ).all()
        by_arn = {r.acm_arn: r for r in rows if r.acm_arn and region_of(r.acm_arn) == region}
        tagged = {name for name in owners.values() if name}
        managed_by_name = (
            {
                r.name: r
                for r in session.exec(
                    select(ManagedCertificate)
                    .where(ManagedCertificate.source == "managed")
                    .where(col(ManagedCertificate.name).in_(tagged))
                ).all()
            }
            if tagged
            else {}
        )
        copies: list[tuple[ManagedCertificate, str, str]] = []
        for arn, cert in described.items():
            row = by_arn.get(arn)
            facts = _facts(cert)
            owner = managed_by_name.get(owners.get(arn) or "")
            if owner is not None and (row is None or row.source == "acm"):
                if row is not None:  # mirrored as unmanaged by an older certman
                    session.delete(row)
                copies.append((owner, arn, facts["serial"]))
                continue
            if row is None:
                row = ManagedCertificate(
                    name=_name_for(arn), source="acm", acm_arn=arn, created_at=now
                )
                report.imported.append(row.name)
            elif row.name not in report.updated:
                report.updated.append(row.name)
            if row.source == "acm":
                row.domains = json.dumps(facts["domains"])
                row.issuer = str(cert.get("Issuer") or "acm")
                algorithm = str(cert.get("KeyAlgorithm") or "")
                row.key_type = _KEY_TYPES.get(algorithm, algorithm)[:16]
                row.status = _STATUS.get(str(cert.get("Status")), "pending")
                row.serial = facts["serial"]
                row.not_before = cert.get("NotBefore")
                row.not_after = cert.get("NotAfter")
                row.renewal_due_at = None
            elif facts["serial"] not in _deployed_serials(session, row):
                row.drift = (
                    f"ACM holds serial {facts['serial']}, not certman's {row.serial}: "
                    "the certificate was changed outside certman."
                )
            else:
                row.drift = None
            row.acm_status = str(cert.get("Status") or "")
            row.acm_type = str(cert.get("Type") or "")
            row.in_use_by = json.dumps(list(cert.get("InUseBy", [])))
            row.updated_at = now
            session.add(row)
            if row.drift:
                report.drift[row.name] = row.drift
        # After the rows' own ARNs, so that a copy's drift is not cleared by them.
        for owner, arn, serial in copies:
            _check_copy(session, owner, arn, serial, now, report)
        for arn, row in by_arn.items():
            if arn not in described and row.source == "managed":
                row.drift = f"{arn} no longer exists in ACM: it was deleted outside certman."
                row.updated_at = now
                session.add(row)
                report.drift[row.name] = row.drift
            elif arn not in described and row.source == "acm":
                session.delete(row)
        append_event(
            session,
            now,
            "acm.sync",
            region,
            imported=len(report.imported),
            updated=len(report.updated),
            drift=sorted(report.drift),
        )
        session.commit()
    return report


def _certman_name(acm: Any, arn: str) -> str:
    """The ``certman:name`` tag of an ACM certificate ("" when it has none)."""
    with aws_call("acm:ListTagsForCertificate", arn, OperationError):
        tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
    return next((str(t.get("Value") or "") for t in tags if t.get("Key") == TAG_NAME), "")


def _check_copy(
    session: Any,
    row: ManagedCertificate,
    arn: str,
    serial: str,
    now: datetime,
    report: SyncReport,
) -> None:
    """A managed certificate's copy under another ARN: flag it when it holds another serial.

    The row's ACM status, type and InUseBy describe the ARN it keeps; a copy leaves them.
    """
    if row.name not in report.updated:
        report.updated.append(row.name)
    if serial in _deployed_serials(session, row):
        return
    row.drift = (
        f"{arn} holds serial {serial}, not certman's {row.serial}: the certificate was "
        "changed outside certman."
    )
    row.updated_at = now
    session.add(row)
    report.drift[row.name] = row.drift


def _deployed_serials(session: Any, row: ManagedCertificate) -> set[str | None]:
    """The active revision's serial, and a renewal's that may be imported but not active yet."""
    latest = session.exec(
        select(Revision.serial)
        .where(Revision.certificate_id == row.id)
        .where(Revision.number == row.latest_revision)
    ).first()
    return {row.serial, latest}


def _facts(cert: dict[str, Any]) -> dict[str, Any]:
    domains = list(cert.get("SubjectAlternativeNames") or [])
    if not domains and cert.get("DomainName"):
        domains = [cert["DomainName"]]
    return {"domains": domains, "serial": acm_serial(str(cert.get("Serial", "")))}


def _name_for(arn: str) -> str:
    return "acm-" + arn.rsplit("/", 1)[-1]


def forget_acm_arn(rt: Runtime, name: str, arn: str) -> None:
    """Drop an ARN that no longer exists from a certificate (before importing it anew)."""
    from certman.service.lifecycle import get_certificate

    now = rt.clock.now()
    with rt.session() as session:
        row = get_certificate(session, name)
        if row.acm_arn != arn:
            return
        row.acm_arn = None
        row.drift = None
        row.updated_at = now
        session.add(row)
        append_event(session, now, "acm.arn_forgotten", name, acm_arn=arn)
        session.commit()
