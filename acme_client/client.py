"""The ACME client: every request certman makes to the server, as plain values (RFC 8555 7)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import josepy as jose
import requests
from acme import challenges, messages
from acme import client as acme_client
from certman.acme_client.jws import algorithm_of
from certman.acme_client.network import Network
from certman.acme_client.problems import (
    AccountGone,
    AccountUnknown,
    Where,
    directory_problem,
    translated,
)
from certman.acme_client.resources import (
    AuthorizationState,
    ChallengeState,
    DirectoryInfo,
    EmptyObject,
    NewOrder,
    OrderState,
    authorization_state,
    identifier,
    order_state,
    revocation,
)
from certman.acme_client.solvers.contract import ChallengeRequest
from cryptography import x509

from certman.errors import CertmanError, IssuanceError

USER_AGENT = "certman-acme"
PEM_CHAIN = "application/pem-certificate-chain"
# What certman needs of a directory (RFC 8555 section 7.1.1).
_REQUIRED_RESOURCES = ("newNonce", "newAccount", "newOrder")


class AcmeClient:
    """One ACME server, one account key. Thread-safe for concurrent orders.

    ``on_account_gone(url)`` is called when the server no longer knows the account at
    ``url`` (accountDoesNotExist, e.g. Pebble after a restart); the request is then sent
    again, once.
    """

    def __init__(self, where: Where, *, verify: str | bool) -> None:
        self.where = where
        self.verify = verify
        self.net = Network(verify=verify, user_agent=USER_AGENT)
        self.on_account_gone: Callable[[str | None], None] | None = None
        self._directory: messages.Directory | None = None
        self._lock = threading.Lock()

    # --- directory and account ---------------------------------------------------------

    def directory(self) -> messages.Directory:
        """RFC 8555 section 7.1.1, fetched once; a URL that answers anything else is refused."""
        with self._lock:
            if self._directory is None:
                try:
                    directory = acme_client.ClientV2.get_directory(self.where.directory, self.net)
                    for required in _REQUIRED_RESOURCES:
                        try:
                            directory[required]
                        except KeyError:
                            raise KeyError(required) from None
                except CertmanError:
                    raise
                except Exception as error:  # translated at the adapter boundary, as everywhere
                    raise directory_problem(error, self.where) from error
                self._directory = directory
            return self._directory

    def directory_info(self) -> DirectoryInfo:
        directory = self.directory()
        meta = directory.meta
        with translated(self.where, "reading the directory"):
            try:
                renewal_info: str | None = directory["renewalInfo"]  # RFC 9773 section 3
            except KeyError:
                renewal_info = None
            return DirectoryInfo(
                new_account=directory["newAccount"],
                external_account_required=bool(meta.external_account_required),
                renewal_info=renewal_info,
                profiles=tuple(sorted((meta.profiles or {}).keys())),
            )

    def use_key(self, key: jose.JWK, account_url: str | None) -> None:
        """Sign with ``key``; as the account at ``account_url`` (kid) once there is one."""
        self.net.key = key
        self.net.alg = algorithm_of(key)
        self.net.account = (
            messages.RegistrationResource(uri=account_url, body=messages.Registration())
            if account_url
            else None
        )

    def forget_account(self) -> None:
        """Sign with the key alone (jwk) until the next registration."""
        self.net.account = None

    @property
    def account_url(self) -> str | None:
        return self.net.account.uri if self.net.account is not None else None

    def new_account(self, *, email: str | None, eab: tuple[str, str] | None) -> str:
        """RFC 8555 section 7.3 (7.3.4 with EAB); returns the account URL."""
        directory = self.directory()
        assert self.net.key is not None
        with translated(self.where, "registering the ACME account"):
            binding = None
            if eab is not None:
                kid, hmac_key = eab
                binding = messages.ExternalAccountBinding.from_data(
                    account_public_key=self.net.key.public_key(),
                    kid=kid,
                    hmac_key=hmac_key,
                    directory=directory,
                )
            registration = messages.NewRegistration.from_data(
                email=email, terms_of_service_agreed=True, external_account_binding=binding
            )
            self.net.account = None  # newAccount is signed with jwk, never kid
            v2 = acme_client.ClientV2(directory, self.net)
            try:
                account = v2.new_account(registration)
                url = account.uri
            except acme_client.errors.ConflictError as existing:
                url = existing.location  # this key already has an account: reuse it
        self.use_key(self.net.key, url)
        return str(url)

    def account_status(self, *, reregister: bool = True) -> str:
        """POST-as-GET on the account URL (RFC 8555 section 7.3.3's fetch)."""
        assert self.account_url
        response = self.post(
            self.account_url, None, "reading the ACME account", reregister=reregister
        )
        return str(response.json().get("status", "unknown"))

    def deactivate_account(self) -> None:
        """RFC 8555 section 7.3.6: irreversible; the server refuses the key from then on."""
        assert self.account_url
        body = messages.UpdateRegistration(status=messages.STATUS_DEACTIVATED)
        self.post(self.account_url, body, "deactivating the ACME account", reregister=False)

    # --- requests ----------------------------------------------------------------------

    def post(
        self, url: str, body: Any, action: str, *, reregister: bool = True, **kwargs: Any
    ) -> requests.Response:
        """A signed POST (body None: POST-as-GET, RFC 8555 section 6.3)."""
        new_nonce = self.directory()["newNonce"]
        for attempt in (1, 2):
            account_url = self.account_url
            try:
                with translated(self.where, action):
                    return self.net.post(url, body, new_nonce_url=new_nonce, **kwargs)
            except AccountGone:
                if attempt == 2 or not reregister or self.on_account_gone is None:
                    raise AccountUnknown(
                        f"The ACME server {self.where.directory} does not know certman's "
                        f"account while {action}; run `certman issuer check "
                        f"{self.where.issuer}`."
                    ) from None
                self.on_account_gone(account_url)
        raise AssertionError("unreachable")  # pragma: no cover

    def new_order(
        self, identifiers: tuple[str, ...], *, replaces: str | None, profile: str | None
    ) -> OrderState:
        """RFC 8555 section 7.4 (+ RFC 9773 section 5 ``replaces``, draft profiles)."""
        body = NewOrder(
            identifiers=[identifier(value) for value in identifiers],
            replaces=replaces,
            profile=profile,
        )
        response = self.post(self.directory()["newOrder"], body, "placing the order")
        url = response.headers.get("Location")
        if not url:
            raise IssuanceError(
                f"The ACME server {self.where.directory} created an order without a Location."
            )
        return self._order(url, response)

    def order(self, url: str) -> OrderState:
        return self._order(url, self.post(url, None, "reading the order"))

    def authorization(self, url: str) -> AuthorizationState:
        response = self.post(url, None, "reading an authorization")
        with translated(self.where, "reading an authorization"):
            return authorization_state(url, response, self.where.now())

    def challenge_request(
        self, authz: AuthorizationState, challenge: ChallengeState
    ) -> ChallengeRequest:
        """What a solver must publish for ``challenge`` (RFC 8555 sections 8.1, 8.3, 8.4)."""
        assert self.net.key is not None
        chall = challenge.chall
        with translated(self.where, "preparing a challenge"):
            key_authorization = chall.key_authorization(self.net.key)
            if isinstance(chall, challenges.DNS01):
                return ChallengeRequest(
                    kind="dns-01",
                    domain=authz.identifier,
                    token=chall.encode("token"),
                    key_authorization=key_authorization,
                    txt_name=chall.validation_domain_name(authz.identifier),
                    txt_value=chall.validation(self.net.key),
                )
            return ChallengeRequest(
                kind=challenge.type,
                domain=authz.identifier,
                token=chall.encode("token"),
                key_authorization=key_authorization,
            )

    def answer(self, challenge: ChallengeState) -> None:
        """RFC 8555 section 7.5.1: POST {} to the challenge URL to ask for validation."""
        self.post(challenge.url, EmptyObject(), "answering a challenge")

    def finalize(self, order: OrderState, csr_pem: bytes) -> OrderState:
        """RFC 8555 section 7.4: send the CSR; the order moves to processing or valid."""
        body = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr_pem))
        return self._order(order.url, self.post(order.finalize, body, "finalizing the order"))

    def certificate(self, url: str) -> str:
        """RFC 8555 section 7.4.2: the PEM chain, leaf first."""
        response = self.post(
            url,
            None,
            "downloading the certificate",
            headers={"Content-Type": self.net.JOSE_CONTENT_TYPE, "Accept": PEM_CHAIN},
        )
        return response.text

    def revoke(self, certificate_pem: bytes, reason: int) -> None:
        """RFC 8555 section 7.6, signed with the account key (never registering one)."""
        self.post(
            self.directory()["revokeCert"],
            revocation(certificate_pem, reason),
            "revoking the certificate",
            reregister=False,
        )

    def revoke_with_certificate_key(
        self, certificate_pem: bytes, reason: int, private_key: jose.JWK
    ) -> None:
        """RFC 8555 section 7.6, signed with the certificate's own key (a jwk, no account).

        A separate signer, so the account key of concurrent orders is never swapped out.
        """
        net = Network(verify=self.verify, user_agent=USER_AGENT)
        net.key = private_key
        net.alg = algorithm_of(private_key)
        with translated(self.where, "revoking the certificate with its own key"):
            net.post(
                self.directory()["revokeCert"],
                revocation(certificate_pem, reason),
                new_nonce_url=self.directory()["newNonce"],
            )

    def get(self, url: str, action: str) -> requests.Response:
        """An unauthenticated GET (RFC 9773 section 4.2: renewalInfo)."""
        with translated(self.where, action):
            return self.net.get(url, content_type=self.net.JSON_CONTENT_TYPE)

    def _order(self, url: str, response: requests.Response) -> OrderState:
        with translated(self.where, "reading the order"):
            return order_state(url, response, self.where.now())
