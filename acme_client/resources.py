"""ACME resources as plain values (RFC 8555 section 7.1), and the request bodies certman sends."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import josepy as jose
import requests
from acme import messages
from certman.acme_client.problems import Problem, problem_of, retry_after_seconds
from cryptography import x509


@dataclass(frozen=True, kw_only=True)
class OrderState:
    """An order as the server last described it (RFC 8555 section 7.1.3)."""

    url: str
    status: str
    identifiers: tuple[str, ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None = None
    error: Problem | None = None
    retry_after: float | None = None


@dataclass(frozen=True, kw_only=True)
class ChallengeState:
    type: str
    url: str
    status: str
    error: Problem | None = None
    # The library's challenge object (token, key authorization); never leaves acme_client.
    chall: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class AuthorizationState:
    """An authorization (RFC 8555 section 7.1.4); ``identifier`` has no "*." for wildcards."""

    url: str
    identifier: str
    wildcard: bool
    status: str
    challenges: tuple[ChallengeState, ...]
    retry_after: float | None = None

    @property
    def name(self) -> str:
        return f"*.{self.identifier}" if self.wildcard else self.identifier


@dataclass(frozen=True, kw_only=True)
class DirectoryInfo:
    new_account: str
    external_account_required: bool
    renewal_info: str | None
    profiles: tuple[str, ...]


# --- reading what the server sent (the caller translates library errors) -----------------


def order_state(url: str, response: requests.Response, now: datetime) -> OrderState:
    body = messages.Order.from_json(response.json())
    return OrderState(
        url=url,
        status=status_name(body.status),
        identifiers=tuple(str(i.value) for i in body.identifiers or ()),
        authorizations=tuple(body.authorizations or ()),
        finalize=body.finalize,
        certificate=body.certificate,
        error=problem_of(body.error) if body.error is not None else None,
        retry_after=retry_after_seconds(response.headers.get("Retry-After"), now),
    )


def authorization_state(url: str, response: requests.Response, now: datetime) -> AuthorizationState:
    body = messages.Authorization.from_json(response.json())
    return AuthorizationState(
        url=url,
        identifier=body.identifier.value,
        wildcard=bool(body.wildcard),
        status=status_name(body.status),
        challenges=tuple(
            ChallengeState(
                type=str(c.chall.typ) if hasattr(c.chall, "typ") else "unknown",
                url=c.uri,
                status=status_name(c.status),
                error=problem_of(c.error) if c.error is not None else None,
                chall=c.chall,
            )
            for c in body.challenges
        ),
        retry_after=retry_after_seconds(response.headers.get("Retry-After"), now),
    )


def status_name(status: messages.Status | None) -> str:
    """RFC 8555 section 7.1.6's status names ("pending", "valid", ...)."""
    return str(status.name) if status is not None else "unknown"


# --- what certman sends --------------------------------------------------------------------


class NewOrder(messages.NewOrder):
    """newOrder with RFC 9773 section 5's ``replaces`` (the acme library lacks it)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


class EmptyObject(jose.JSONObjectWithFields):
    """The payload ``{}`` (RFC 8555 section 7.5.1), distinct from POST-as-GET's empty one."""

    def __bool__(self) -> bool:  # acme sends an empty payload for falsy bodies
        return True


def revocation(certificate_pem: bytes, reason: int) -> messages.Revocation:
    """RFC 8555 section 7.6's body: the certificate (DER) and the CRL reason code."""
    return messages.Revocation(
        certificate=x509.load_pem_x509_certificate(certificate_pem), reason=reason
    )


def identifier(value: str) -> messages.Identifier:
    """RFC 8738: IP identifiers have type "ip"; everything else is "dns" (wildcards too)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value)
    return messages.Identifier(typ=messages.IDENTIFIER_IP, value=value)
