"""The offline issuer `certman simulate` uses in place of every real one.

It signs with a throwaway in-memory CA. For a private CA it mirrors the real one's limits
(its signing policy, and the expiry of its intermediate, past which no leaf may reach), so
the simulation shows the renewals that the real CA would refuse. For an ACME CA, which
decides the lifetime itself (whatever validity certman asks for), it issues with the
lifetime the CA gave each certificate last time. An issuer that is no longer configured
refuses everything, as the real lookup would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from certman.contracts.build_context import BuildContext
from certman.contracts.issuer import IssueRequest, IssueResponse, KeyIssueRequest
from certman.errors import CertmanError, IssuanceError
from certman.service.runtime import Runtime

TYPE = "simulated"
FACTORY = "certman.scheduler.stand_in:build"
R = TypeVar("R", IssueRequest, KeyIssueRequest)


def describe(real: Runtime, name: str) -> dict[str, Any]:
    """The stand-in settings for issuer ``name``, read without building the real issuer
    (that could reach an ACME server or an HSM)."""
    from cryptography import x509

    from certman.service.authorities import authority_exists, get_authority

    settings = dict(real.config.issuers.get(name, {}))
    ca_name: str | None = None
    if settings.get("type") == "private-ca":
        ca_name = str(settings.get("ca") or name)
    elif not settings:
        try:
            if not authority_exists(real, name):
                return {"type": TYPE, "refuse": f"Issuer {name!r} is not configured."}
        except CertmanError as e:
            return {"type": TYPE, "refuse": e.message}
        ca_name = name
    if ca_name is None:
        return {"type": TYPE, "kind": str(settings.get("type", "?"))}
    try:
        row = get_authority(real, ca_name)
    except CertmanError as e:
        return {"type": TYPE, "refuse": e.message}
    inter = x509.load_pem_x509_certificate(row.intermediate_certificate_pem.encode())
    return {
        "type": TYPE,
        "kind": "private-ca",
        "ca_not_after": inter.not_valid_after_utc.isoformat(),
        "policy": json.loads(row.policy),
    }


def add_given_lifetimes(issuers: dict[str, dict[str, Any]], certs: Iterable[Any]) -> None:
    """For ACME issuers: each certificate's lifetime as the CA gave it (its current
    revision's not_after - not_before), for the stand-in to issue with."""
    for cert in certs:
        settings = issuers.get(cert.issuer)
        if settings is None or settings.get("kind") != "acme":
            continue
        if cert.not_before is not None and cert.not_after is not None:
            span = int((cert.not_after - cert.not_before).total_seconds())
            settings.setdefault("lifetimes", {})[cert.name] = span


class StandInIssuer:
    """Implements Issuer and SupportsKeyIssue; holds a throwaway CA, nothing real."""

    def __init__(self, name: str, settings: Mapping[str, Any], now: datetime) -> None:
        from certman.ca import PrivateCA, SigningPolicy, create_hierarchy

        from certman.models import KeyType

        self.name = name
        self.refuse = str(settings.get("refuse") or "")
        self.lifetimes: Mapping[str, int] = dict(settings.get("lifetimes") or {})
        self._ca: Any = None
        if self.refuse:
            return
        policy = (
            SigningPolicy.from_dict(settings["policy"])
            if "policy" in settings
            else SigningPolicy(max_validity=timedelta(days=3650))
        )
        until = (
            datetime.fromisoformat(settings["ca_not_after"])
            if "ca_not_after" in settings
            else now + timedelta(days=365 * 100)
        )
        if until <= now:
            self.refuse = f"The issuing CA of {name!r} expired on {until:%Y-%m-%d}."
            return
        hierarchy = create_hierarchy(
            name=f"simulated-{name}",
            common_name="certman simulation",
            key_type=KeyType.EC_P256,
            policy=policy,
            now=now,
            root_validity=until - now + timedelta(days=1),
            intermediate_validity=until - now,
        )
        self._ca = PrivateCA.from_hierarchy(hierarchy, policy)

    def issue_for_key(self, request: KeyIssueRequest) -> IssueResponse:
        if self.refuse:
            raise IssuanceError(self.refuse)
        return self._ca.issue_for_key(self._as_given(request))  # type: ignore[no-any-return]

    def issue(self, request: IssueRequest) -> IssueResponse:
        if self.refuse:
            raise IssuanceError(self.refuse)
        return self._ca.issue(self._as_given(request))  # type: ignore[no-any-return]

    def _as_given(self, request: R) -> R:
        """The request with the lifetime the real CA gives this certificate, when known."""
        given = self.lifetimes.get(request.name)
        return replace(request, validity=timedelta(seconds=given)) if given else request


def build(context: BuildContext, settings: Mapping[str, Any]) -> StandInIssuer:
    """Registry factory for ``type = "simulated"``."""
    return StandInIssuer(str(settings["name"]), settings, context.clock.now())
