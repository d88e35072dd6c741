"""Notification bodies shaped like the EventBridge events ACM sends, so rules can consume them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from certman.inventory.tables import ManagedCertificate

# ACM's own detail-type (EventBridge, "ACM Certificate Approaching Expiration"); the
# others follow its wording for what ACM has no event for.
EXPIRING = "ACM Certificate Approaching Expiration"
RENEWAL_FAILED = "certman Certificate Renewal Failed"
RENEWAL_RECOVERED = "certman Certificate Renewal Recovered"
DEPLOY_FAILED = "certman Certificate Deployment Failed"
PREFLIGHT_FAILED = "certman Preflight Failed"
SOURCE = "certman"  # EventBridge reserves "aws.*" sources for AWS itself
# The short name each is recorded under in the notification table (sent once per key).
KIND = {
    EXPIRING: "expiring",
    RENEWAL_FAILED: "renewal-failed",
    RENEWAL_RECOVERED: "renewal-recovered",
    DEPLOY_FAILED: "deploy-failed",
    PREFLIGHT_FAILED: "preflight-failed",
}


def event(
    detail_type: str,
    *,
    time: datetime,
    resources: list[str],
    detail: dict[str, Any],
    region: str = "",
    account: str = "",
) -> dict[str, Any]:
    """version, id, detail-type, source, account, time, region, resources, detail."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": SOURCE,
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def certificate_event(
    detail_type: str,
    cert: ManagedCertificate,
    *,
    time: datetime,
    default_region: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """An event about one certificate: its ACM ARN as the resource when it has one."""
    region, account = default_region, ""
    if cert.acm_arn:
        parts = cert.acm_arn.split(":", 5)  # arn:partition:acm:region:account:certificate/id
        if len(parts) == 6:
            region, account = parts[3] or region, parts[4]
    return event(
        detail_type,
        time=time,
        resources=[cert.acm_arn] if cert.acm_arn else [f"certman:certificate/{cert.name}"],
        region=region,
        account=account,
        detail={"CommonName": common_name(cert), "CertificateName": cert.name, **detail},
    )


def common_name(cert: ManagedCertificate) -> str:
    domains = json.loads(cert.domains or "[]")
    return str(domains[0]) if domains else cert.name
