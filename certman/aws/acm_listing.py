"""The ACM certificates of a region as typed records, and their certman:name tag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certman.aws.acm_certs import KEY_TYPES, TAG_NAME, acm_serial
from certman.aws.errors import aws_call
from certman.errors import OperationError


@dataclass(frozen=True, kw_only=True)
class AcmCertificate:
    """What DescribeCertificate says of one certificate, in certman's words where it has
    them (``serial`` as certman writes serials); "" or None where ACM says nothing."""

    arn: str
    domains: tuple[str, ...]
    serial: str
    issuer: str
    key_algorithm: str  # ACM's KeyAlgorithm ("EC_prime256v1")
    status: str  # ACM's Status ("ISSUED")
    type: str  # ACM's Type ("IMPORTED")
    not_before: datetime | None
    not_after: datetime | None
    in_use_by: tuple[str, ...]


def list_certificates(acm: Any, region: str) -> list[AcmCertificate]:
    """Every certificate of every key type in ``acm``'s region, in ListCertificates order."""
    found = []
    with aws_call("acm:ListCertificates", region, OperationError):
        for page in acm.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": KEY_TYPES}
        ):
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                with aws_call("acm:DescribeCertificate", arn, OperationError):
                    described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
                found.append(_record(arn, described))
    return found


def certman_name(acm: Any, arn: str) -> str:
    """The ``certman:name`` tag of an ACM certificate ("" when it has none)."""
    with aws_call("acm:ListTagsForCertificate", arn, OperationError):
        tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
    return next((str(t.get("Value") or "") for t in tags if t.get("Key") == TAG_NAME), "")


def _record(arn: str, cert: dict[str, Any]) -> AcmCertificate:
    domains = list(cert.get("SubjectAlternativeNames") or [])
    if not domains and cert.get("DomainName"):
        domains = [cert["DomainName"]]
    return AcmCertificate(
        arn=arn,
        domains=tuple(domains),
        serial=acm_serial(str(cert.get("Serial", ""))),
        issuer=str(cert.get("Issuer") or ""),
        key_algorithm=str(cert.get("KeyAlgorithm") or ""),
        status=str(cert.get("Status") or ""),
        type=str(cert.get("Type") or ""),
        not_before=cert.get("NotBefore"),
        not_after=cert.get("NotAfter"),
        in_use_by=tuple(cert.get("InUseBy", [])),
    )
