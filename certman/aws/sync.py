"""`certman acm sync`: every ACM certificate of the region in the inventory, drift flagged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from certman.aws.acm import acm_serial
from certman.aws.errors import aws_call
from certman.errors import OperationError
from certman.inventory.audit import append_event
from certman.inventory.tables import ManagedCertificate

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

# ListCertificates returns only RSA-2048 certificates unless asked for every key type.
KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]
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


def sync_acm(rt: Runtime, region: str | None = None) -> SyncReport:
    acm = rt.aws.client("acm", region)
    described = {}
    with aws_call("acm:ListCertificates", region or rt.aws.region, OperationError):
        for page in acm.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": KEY_TYPES}
        ):
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                with aws_call("acm:DescribeCertificate", arn, OperationError):
                    described[arn] = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    now = rt.clock.now()
    report = SyncReport()
    with rt.session() as session:
        rows = session.exec(
            select(ManagedCertificate).where(col(ManagedCertificate.acm_arn).is_not(None))
        ).all()
        by_arn = {r.acm_arn: r for r in rows}
        for arn, cert in described.items():
            row = by_arn.get(arn)
            facts = _facts(cert)
            if row is None:
                row = ManagedCertificate(
                    name=_name_for(arn), source="acm", acm_arn=arn, created_at=now
                )
                report.imported.append(row.name)
            else:
                report.updated.append(row.name)
            if row.source == "acm":
                row.domains = json.dumps(facts["domains"])
                row.issuer = str(cert.get("Issuer") or "acm")
                row.key_type = str(cert.get("KeyAlgorithm") or "")
                row.status = _STATUS.get(str(cert.get("Status")), "pending")
                row.serial = facts["serial"]
                row.not_before = cert.get("NotBefore")
                row.not_after = cert.get("NotAfter")
                row.renewal_due_at = None
            elif facts["serial"] != row.serial:
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
            region or rt.aws.region,
            imported=len(report.imported),
            updated=len(report.updated),
            drift=sorted(report.drift),
        )
        session.commit()
    return report


def _facts(cert: dict[str, Any]) -> dict[str, Any]:
    domains = list(cert.get("SubjectAlternativeNames") or [])
    if not domains and cert.get("DomainName"):
        domains = [cert["DomainName"]]
    return {"domains": domains, "serial": acm_serial(str(cert.get("Serial", "")))}


def _name_for(arn: str) -> str:
    return "acm-" + arn.rsplit("/", 1)[-1]
