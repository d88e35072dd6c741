"""`certman acm sync`: every ACM certificate of the region in the inventory, drift flagged."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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
from certman.lifecycle.states import CertificateStatus

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

# ACM's KeyAlgorithm in certman's key type words, where certman has one.
_KEY_TYPES = {algorithm: key_type.value for key_type, algorithm in ACM_KEY_ALGORITHMS.items()}
_STATUS = {
    "ISSUED": CertificateStatus.ACTIVE,
    "EXPIRED": CertificateStatus.EXPIRED,
    "REVOKED": CertificateStatus.REVOKED,
    "FAILED": CertificateStatus.FAILED,
    "PENDING_VALIDATION": CertificateStatus.PENDING,
    "INACTIVE": CertificateStatus.FAILED,
    "VALIDATION_TIMED_OUT": CertificateStatus.FAILED,
}


@dataclass
class SyncReport:
    imported: list[str] = field(default_factory=list)
    updated: set[str] = field(default_factory=set)
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
        rows = session.exec(
            select(ManagedCertificate).where(col(ManagedCertificate.acm_arn).is_not(None))
        ).all()
        by_arn = {r.acm_arn: r for r in rows if r.acm_arn and region_of(r.acm_arn) == region}
        # Tags only for what the inventory cannot place: ARNs without a row (a copy made
        # by a target in this region, or a certificate certman never saw), and rows an
        # older certman mirrored as unmanaged although they hold a serial certman issued
        # (copies: found once, then they are no longer rows).
        mirrored = {
            arn: _facts(cert)["serial"]
            for arn, cert in described.items()
            if arn in by_arn and by_arn[arn].source == "acm"
        }
        ours = _issued_serials(session, set(mirrored.values()))
    unplaced = [arn for arn in described if arn not in by_arn or mirrored.get(arn) in ours]
    owners = {arn: _certman_name(acm, arn) for arn in unplaced}
    now = rt.clock.now()
    report = SyncReport()
    with rt.session() as session:
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
        deployed = _deployed_serials(
            session,
            [r for r in by_arn.values() if r.source == "managed"] + list(managed_by_name.values()),
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
            else:
                report.updated.add(row.name)
            if row.source == "acm":
                row.domains = json.dumps(facts["domains"])
                row.issuer = str(cert.get("Issuer") or "acm")
                algorithm = str(cert.get("KeyAlgorithm") or "")
                row.key_type = _KEY_TYPES.get(algorithm, algorithm)[:16]
                row.status = _STATUS.get(str(cert.get("Status")), CertificateStatus.PENDING)
                row.serial = facts["serial"]
                row.not_before = cert.get("NotBefore")
                row.not_after = cert.get("NotAfter")
                row.renewal_due_at = None
            elif facts["serial"] not in deployed.get(row.name, set()):
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
            report.updated.add(owner.name)
            if serial not in deployed.get(owner.name, set()):
                _copy_drifted(session, owner, arn, serial, now, report)
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


def _copy_drifted(
    session: Any,
    row: ManagedCertificate,
    arn: str,
    serial: str,
    now: datetime,
    report: SyncReport,
) -> None:
    """A managed certificate's copy under another ARN holds another serial: flag it.

    The row's ACM status, type and InUseBy describe the ARN it keeps; a copy leaves them.
    """
    row.drift = (
        f"{arn} holds serial {serial}, not certman's {row.serial}: the certificate was "
        "changed outside certman."
    )
    row.updated_at = now
    session.add(row)
    report.drift[row.name] = row.drift


# Bound parameters per IN list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _deployed_serials(
    session: Any, rows: Iterable[ManagedCertificate]
) -> dict[str, set[str | None]]:
    """Per certificate name: the active revision's serial, and a renewal's that may be
    imported but not active yet (the latest revision's). One query per 500 certificates."""
    rows = list(rows)
    latest: dict[int, str | None] = {}
    ids = sorted({r.id for r in rows if r.id is not None})
    for chunk in _chunks(ids):
        latest.update(
            session.exec(
                select(Revision.certificate_id, Revision.serial)
                .join(
                    ManagedCertificate,
                    (col(ManagedCertificate.id) == col(Revision.certificate_id))
                    & (col(ManagedCertificate.latest_revision) == col(Revision.number)),
                )
                .where(col(ManagedCertificate.id).in_(chunk))
            ).all()
        )
    return {r.name: {r.serial, latest.get(r.id) if r.id is not None else None} for r in rows}


def _issued_serials(session: Any, serials: set[str]) -> set[str]:
    """Which of ``serials`` certman issued (some revision holds it)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(serials)):
        found.update(
            s
            for s in session.exec(
                select(Revision.serial).where(col(Revision.serial).in_(chunk))
            ).all()
            if s
        )
    return found


def _facts(cert: dict[str, Any]) -> dict[str, Any]:
    domains = list(cert.get("SubjectAlternativeNames") or [])
    if not domains and cert.get("DomainName"):
        domains = [cert["DomainName"]]
    return {"domains": domains, "serial": acm_serial(str(cert.get("Serial", "")))}


def _name_for(arn: str) -> str:
    return "acm-" + arn.rsplit("/", 1)[-1]
