"""The issuers' contract: private CAs and ACME CAs certify keys for identifiers.

Each operation takes one request dataclass and returns one response dataclass; optional
capabilities are separate small protocols, detected with ``supports`` (certman.contracts).
Issuers raise only certman errors (certman.errors): third-party exceptions are translated
in the adapter that called the third-party code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from certman.models import CertificateFacts, KeyType, RevocationReason

if TYPE_CHECKING:  # cryptography is imported by the code that makes keys, not by contracts
    from certman.pki import PublicKey

# --- issuers -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    """Ask an issuer to certify the key behind ``csr_pem`` for ``identifiers``.

    ``order_url`` is set when an earlier attempt for the same revision already placed
    an order (ACME); the issuer resumes it instead of placing a new one while the server
    still accepts it. ``checkpoint`` must be called with the order URL as soon as it
    exists, before waiting on anything, so that a crash can resume (DESIGN.md rule 2).
    ``serial`` and ``not_before`` come from the issuer's own IssuePlan (SupportsIssuePlan),
    persisted before the first attempt; issuers that plan must sign exactly them.
    ``replacing_pem`` is the certificate this issuance replaces (the certificate's active
    revision), None for a first issuance: an ACME issuer names it in the order's
    ``replaces`` when the server offers ARI (RFC 9773 section 5).
    """

    name: str
    revision: int
    identifiers: tuple[str, ...]
    csr_pem: bytes
    key_type: KeyType
    validity: timedelta
    now: datetime
    order_url: str | None = None
    replaces: str | None = None
    profile: str | None = None
    checkpoint: Callable[[str], None] | None = None
    serial: int | None = None
    not_before: datetime | None = None
    replacing_pem: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class IssueResponse:
    """The leaf certificate and the chain above it (intermediates only, leaf first order).

    ``facts`` are what an in-process issuer read off the certificate object it just
    signed; without them (remote issuers) the caller parses ``certificate_pem``.
    """

    certificate_pem: bytes
    chain_pem: bytes
    order_url: str | None = None
    facts: CertificateFacts | None = None


@runtime_checkable
class Issuer(Protocol):
    """Turns a CSR into a certificate (private CA, ACME)."""

    name: str

    def issue(self, request: IssueRequest) -> IssueResponse:
        """Issue exactly one certificate; raise IssuanceError (retryable or not) otherwise."""
        ...


@dataclass(frozen=True, kw_only=True)
class KeyIssueRequest:
    """Certify a public key that certman generated and sealed in this very process.

    ``serial`` and ``not_before`` as in IssueRequest. ``public_key`` is the key of
    ``public_key_der`` as the caller's key object, when it holds one: the issuer may take
    it instead of parsing the DER (the caller checks the returned certificate against
    ``public_key_der`` either way).
    """

    name: str
    revision: int
    identifiers: tuple[str, ...]
    public_key_der: bytes
    key_type: KeyType
    validity: timedelta
    now: datetime
    serial: int | None = None
    not_before: datetime | None = None
    public_key: PublicKey | None = None


@runtime_checkable
class SupportsKeyIssue(Protocol):
    def issue_for_key(self, request: KeyIssueRequest) -> IssueResponse:
        """Issue without a CSR round trip (as Vault's pki/issue and step-ca's local signer do).

        Only in-process issuers offer this: certman generated the key itself, so the CSR's
        proof of possession (RFC 2986) would prove nothing the caller does not already know.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class IssuePlanRequest:
    validity: timedelta
    now: datetime


@dataclass(frozen=True, kw_only=True)
class IssuePlan:
    """What a certificate will carry, chosen once, before it is signed."""

    serial: int
    not_before: datetime
    not_after: datetime


@runtime_checkable
class SupportsIssuePlan(Protocol):
    def plan_issue(self, request: IssuePlanRequest) -> IssuePlan:
        """Choose the serial and validity of the next certificate; never signs anything.

        The lifecycle persists the plan before it asks for the certificate and passes it in
        every attempt, and the issuer signs exactly that: a signature made just before a
        crash, then made again on resume, is the same certificate, never a second one.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class PrecheckRequest:
    """What an issuance would ask for, checked before any key is generated."""

    identifiers: tuple[str, ...]
    key_type: KeyType
    validity: timedelta
    now: datetime


@runtime_checkable
class SupportsPrecheck(Protocol):
    def precheck(self, request: PrecheckRequest) -> None:
        """Raise PolicyError/ValidationError naming the field if ``issue`` would refuse."""
        ...


@dataclass(frozen=True, kw_only=True)
class RevokeRequest:
    """Revoke ``certificate_pem``.

    ``certificate_key`` unseals the certificate's private key (PKCS#8 DER, in memory only);
    an issuer calls it only when it must prove possession of that key, as ACME allows when
    the account that ordered the certificate is gone (RFC 8555 section 7.6).
    """

    certificate_pem: bytes
    reason: RevocationReason
    now: datetime
    certificate_key: Callable[[], bytes] | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class RevokeResponse:
    revoked_at: datetime


@runtime_checkable
class SupportsRevoke(Protocol):
    def revoke(self, request: RevokeRequest) -> RevokeResponse:
        """Revoke at the CA. Revoking an already revoked certificate is not an error."""
        ...


@dataclass(frozen=True, kw_only=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: RevocationReason


@dataclass(frozen=True, kw_only=True)
class CRLRequest:
    entries: tuple[RevokedEntry, ...]
    number: int
    now: datetime
    next_update: timedelta = timedelta(days=7)


@dataclass(frozen=True, kw_only=True)
class CRLResponse:
    crl_pem: bytes


@runtime_checkable
class SupportsCRL(Protocol):
    def crl(self, request: CRLRequest) -> CRLResponse:
        """Sign a CRL listing every entry with its reason (RFC 5280 section 5)."""
        ...


@dataclass(frozen=True, kw_only=True)
class RenewalInfoRequest:
    certificate_pem: bytes
    issuer_pem: bytes
    now: datetime


@dataclass(frozen=True, kw_only=True)
class RenewalInfoResponse:
    """RFC 9773 section 4.2: the suggested window and when to ask again."""

    window_start: datetime
    window_end: datetime
    retry_after: datetime
    explanation_url: str | None = None
    cert_id: str = ""


@runtime_checkable
class SupportsRenewalInfo(Protocol):
    def renewal_info(self, request: RenewalInfoRequest) -> RenewalInfoResponse | None:
        """The server's renewal window, or None when the server offers no ARI for it.

        A failed or malformed answer raises a retryable CertmanError whose ``retry_after``
        says when to ask again (RFC 9773 section 4.3.3); ARI is advisory, so the caller
        keeps the renewal time it has.
        """
        ...


@dataclass(frozen=True, kw_only=True)
class PreflightResult:
    ok: bool
    checks: tuple[tuple[str, bool, str], ...] = ()  # (check, ok, message)


@runtime_checkable
class SupportsPreflight(Protocol):
    def preflight(self, now: datetime) -> PreflightResult:
        """Can this backend still do its job? Never changes anything."""
        ...


@runtime_checkable
class SupportsDeactivate(Protocol):
    def deactivate(self) -> str:
        """Deactivate the issuer's account at the CA (RFC 8555 section 7.3.6); return its URL."""
        ...
