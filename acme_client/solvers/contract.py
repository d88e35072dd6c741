"""The challenge solvers' contract (RFC 8555 section 8): only the ACME issuer uses it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, kw_only=True)
class ChallengeRequest:
    """One challenge to satisfy (RFC 8555 section 8).

    http-01: serve ``key_authorization`` at ``/.well-known/acme-challenge/<token>``.
    dns-01: publish ``txt_value`` in a TXT record at ``txt_name``.
    """

    kind: str
    domain: str
    token: str
    key_authorization: str
    txt_name: str = ""
    txt_value: str = ""


@runtime_checkable
class ChallengeSolver(Protocol):
    kind: str

    def perform(self, requests: list[ChallengeRequest]) -> None: ...

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        """Revert everything perform did, even if perform failed half-way."""
        ...


class CheckableSolver(ChallengeSolver, Protocol):
    def check(self) -> str:
        """Say why the solver is ready, or raise a certman error saying why not."""
        ...


class DnsZone(Protocol):
    """The DNS zone a dns-01 solver publishes TXT records in (Route 53: certman.aws.route53).

    ``add_txt`` and ``remove_txt`` keep every other value of the record set; each returns
    a change to wait for, or None when nothing had to change. Failures are certman errors.
    """

    def add_txt(self, name: str, values: Sequence[str]) -> str | None: ...

    def remove_txt(self, name: str, values: Sequence[str]) -> str | None: ...

    def wait_for_change(self, change: str, timeout: float) -> None:
        """Return once ``change`` is served by every authoritative server; a retryable
        error after ``timeout`` seconds."""
        ...

    def check(self) -> str:
        """Say why the zone is usable, or raise a certman error saying why not."""
        ...
