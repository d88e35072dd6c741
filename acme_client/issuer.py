"""The ACME issuer: certman's Issuer contract and its optional capabilities, on an RFC 8555 CA."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from certman.acme_client.account import Account
from certman.acme_client.ari import RenewalInfo, cert_id
from certman.acme_client.client import AcmeClient
from certman.acme_client.jws import jwk_of
from certman.acme_client.orders import OrderPlan, obtain
from certman.acme_client.preflight import run_checks
from certman.acme_client.problems import AccountUnknown, ProblemError, ServerBusy
from certman.acme_client.profiles import chosen_profile
from certman.acme_client.settings import AcmeSettings
from certman.acme_client.solvers.contract import CheckableSolver

from certman.contracts.issuer import (
    IssueRequest,
    IssueResponse,
    PrecheckRequest,
    PreflightResult,
    RenewalInfoRequest,
    RenewalInfoResponse,
    RevokeRequest,
    RevokeResponse,
)
from certman.domains import is_ip_address
from certman.errors import IssuanceError, ValidationError

if TYPE_CHECKING:
    from certman.service.runtime import Runtime  # the core passes itself in

log = logging.getLogger("certman.acme")

# How long one attempt waits on the server (validation, issuance) before leaving the order
# to be resumed by the next attempt.
MIN_ORDER_TIMEOUT = 90.0


class AcmeIssuer:
    """Issues through one ACME directory with one account; safe for concurrent orders."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        settings: AcmeSettings,
        client: AcmeClient,
        account: Account,
        solver: CheckableSolver,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = settings.name
        self.runtime = runtime
        self.settings = settings
        self.client = client
        self.account = account
        self.solver = solver
        self.ari = RenewalInfo(client)
        self.sleep = sleep

    # --- Issuer ------------------------------------------------------------------------

    def precheck(self, request: PrecheckRequest) -> None:
        """Refuse, before anything is planned, what this issuance could not get past: names
        the challenge cannot prove, the server's pause, an unreachable directory, an account
        that cannot register (EAB), a busy http-01 port or a missing webroot."""
        challenge = self.settings.challenge
        for identifier in request.identifiers:
            if identifier.startswith("*.") and challenge != "dns-01":
                raise ValidationError(
                    f"{identifier} is a wildcard; ACME proves wildcards only with dns-01 "
                    f'(RFC 8555 section 7.1.3), so set challenge = "dns-01" in '
                    f"{self.settings.table} or use another issuer."
                )
            if is_ip_address(identifier) and challenge != "http-01":
                raise ValidationError(
                    f"{identifier} is an IP address; ACME proves those with http-01 "
                    f"(RFC 8738 section 7), not {challenge}; use an http-01 issuer."
                )
        self._honour_backoff(request.now)
        self._profile()  # reaches the directory: unreachable or untrusted fails here
        # A missing or refused External Account Binding is found here, before anything is
        # planned, rather than as a failed revision.
        self.account.ensure()
        if challenge == "http-01":
            self.solver.check()  # a busy port or a missing webroot: refused before any key

    def issue(self, request: IssueRequest) -> IssueResponse:
        from certman.pki import split_pem_chain

        self._honour_backoff(request.now)
        try:
            self.account.ensure()
            plan = OrderPlan(
                request=request,
                solver=self.solver,
                challenge=self.settings.challenge,
                replaces=self._replaces(request),
                profile=self._profile(),
                timeout=max(MIN_ORDER_TIMEOUT, self.settings.propagation_timeout.total_seconds()),
                sleep=self.sleep,
            )
            order, chain = obtain(self.client, plan)
        except ServerBusy as error:
            # A 5xx pause is the whole server's: every certificate of this issuer waits.
            # rateLimited is mostly about this order's names (certificates per domain,
            # duplicates, failed validations); the revision keeps its Retry-After
            # (record_failure) and the lifecycle orders nothing for this certificate
            # before then, so one busy domain never holds up the renewals of the others.
            if not error.rate_limited:
                self.account.record_backoff(error.retry_after)
            raise
        try:
            parts = split_pem_chain(chain.encode())
        except ValueError as e:
            raise IssuanceError(f"The ACME server sent a malformed certificate chain: {e}.") from e
        if not parts:
            raise IssuanceError("The ACME server sent an empty certificate chain.")
        return IssueResponse(
            certificate_pem=parts[0], chain_pem=b"".join(parts[1:]), order_url=order.url
        )

    # --- SupportsRevoke ----------------------------------------------------------------

    def revoke(self, request: RevokeRequest) -> RevokeResponse:
        """RFC 8555 section 7.6; an already revoked certificate is not an error.

        Signed by the account when certman has a registered one. When that account may not
        revoke the certificate (deactivated, lost, or another account ordered it), the
        request is signed with the certificate's own key instead, as section 7.6 allows;
        revoking never registers an account.
        """
        if self.account.load():
            try:
                self.client.revoke(request.certificate_pem, request.reason.code)
                return RevokeResponse(revoked_at=request.now)
            except ProblemError as error:
                if error.code == "alreadyRevoked":
                    return RevokeResponse(revoked_at=request.now)
                if error.code != "unauthorized":
                    raise
                log.info("the account may not revoke it (%s); using the certificate's key", error)
            except AccountUnknown as error:
                log.info("%s; revoking with the certificate's key", error.message)
        return self._revoke_with_certificate_key(request)

    def _revoke_with_certificate_key(self, request: RevokeRequest) -> RevokeResponse:
        from certman.pki import load_private_key_der

        if request.certificate_key is None:
            raise IssuanceError(
                f"Issuer {self.name} has no registered ACME account that could revoke the "
                "certificate, and its private key is not available to sign the request."
            )
        der = request.certificate_key()  # unsealed in memory only, for this one request
        try:
            key = jwk_of(load_private_key_der(der))
        finally:
            del der
        try:
            self.client.revoke_with_certificate_key(
                request.certificate_pem, request.reason.code, key
            )
        except ProblemError as error:
            if error.code != "alreadyRevoked":
                raise
        return RevokeResponse(revoked_at=request.now)

    # --- SupportsRenewalInfo -----------------------------------------------------------

    def renewal_info(self, request: RenewalInfoRequest) -> RenewalInfoResponse | None:
        """RFC 9773: the server's suggested window; None without ARI (or once expired).

        A failed answer raises a retryable error carrying when to ask again.
        """
        return self.ari.fetch(request)

    # --- SupportsPreflight -------------------------------------------------------------

    def preflight(self, now: datetime) -> PreflightResult:
        return run_checks(
            client=self.client,
            settings=self.settings,
            account=self.account,
            solver=self.solver,
            now=now,
        )

    # --- account management ------------------------------------------------------------

    def deactivate(self) -> str:
        """Deactivate the account at the server; returns its URL."""
        return self.account.deactivate()

    # --- internals ---------------------------------------------------------------------

    def _honour_backoff(self, now: datetime) -> None:
        until = self.account.backoff_until()
        if until is not None and until > now:
            raise IssuanceError(
                f"The ACME server {self.settings.directory} asked certman to wait until "
                f"{until.isoformat()}; certman will try again then.",
                retryable=True,
                retry_after=until,
            )

    def _profile(self) -> str | None:
        return chosen_profile(self.client.directory_info(), self.settings)

    def _replaces(self, request: IssueRequest) -> str | None:
        """RFC 9773 section 5: a renewal names the certificate it replaces, if ARI is offered."""
        if request.replaces:
            return request.replaces
        if request.revision <= 1 or self.client.directory_info().renewal_info is None:
            return None
        previous = self._previous_certificate(request.name)
        if previous is None:
            return None
        try:
            return cert_id(previous)
        except ValidationError:
            return None

    def _previous_certificate(self, name: str) -> bytes | None:
        """The certificate this issuance replaces: the active revision in the inventory."""
        from sqlmodel import select

        from certman.inventory.tables import ManagedCertificate, Revision

        with self.runtime.session() as session:
            row = session.exec(
                select(Revision.certificate_pem)
                .join(ManagedCertificate, ManagedCertificate.id == Revision.certificate_id)  # type: ignore[arg-type]
                .where(ManagedCertificate.name == name)
                .where(Revision.number == ManagedCertificate.current_revision)
            ).first()
        return row.encode() if row else None
