"""The lifetime a new certificate gets when the operator names none."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from certman.durations import format_duration
from certman.service.runtime import Runtime

FALLBACK_VALIDITY = timedelta(days=90)


@dataclass(frozen=True, kw_only=True)
class DefaultValidity:
    validity: timedelta
    note: str | None = None  # set when [defaults] validity was shortened to fit the CA


def default_validity(rt: Runtime, issuer: str) -> DefaultValidity:
    """``[defaults] validity``, or the issuing CA's max_validity when that is shorter.

    Only for a validity nobody asked for: an explicit --validity over the CA's maximum is
    still refused by the CA's policy.
    """
    configured = rt.config.duration("defaults", "validity") or FALLBACK_VALIDITY
    limit = _private_ca_max_validity(rt, issuer)
    if limit is None or limit >= configured:
        return DefaultValidity(validity=configured)
    return DefaultValidity(
        validity=limit,
        note=(
            f"validity {format_duration(limit)}, the max_validity of CA {issuer!r} "
            f"([defaults] validity {format_duration(configured)} is longer)"
        ),
    )


def _private_ca_max_validity(rt: Runtime, issuer: str) -> timedelta | None:
    from sqlmodel import select

    from certman.ca import SigningPolicy
    from certman.inventory.tables import Authority

    settings = rt.config.issuers.get(issuer)
    if settings is not None:
        if settings.get("type") != "private-ca":
            return None  # an ACME CA says what it allows when it answers the order
        issuer = str(settings.get("ca") or issuer)
    with rt.session() as session:
        policy = session.exec(select(Authority.policy).where(Authority.name == issuer)).first()
    if policy is None:
        return None  # an unknown issuer is refused by validation, naming the known ones
    return SigningPolicy.from_dict(json.loads(policy)).max_validity
