"""The ACME account: registered on first use, key sealed in the inventory, re-registered if lost."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime

import josepy as jose
from certman.acme_client.client import AcmeClient
from certman.acme_client.jws import jwk_of
from certman.acme_client.problems import ProblemError
from certman.acme_client.settings import AcmeSettings

from certman.contracts.account_store import AccountStore, SavedKey, StoredAccount
from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import ConfigError, ValidationError
from certman.models import EncryptionContext, WrappedKey
from certman.pki import generate_private_key, load_private_key_der, private_key_to_der

log = logging.getLogger("certman.acme")

PURPOSE = "acme-account-key"


def key_context(issuer: str) -> EncryptionContext:
    """What the account key is sealed to: this issuer's account, nothing else."""
    return EncryptionContext(certificate=f"acme:{issuer}", revision=0, purpose=PURPOSE)


class Account:
    """The account of one issuer at one directory; safe to use from concurrent orders.

    ``store`` keeps it (the inventory's acme_account table); ``key_wrapper`` seals its key
    and is asked for only when a key is sealed or unsealed.
    """

    def __init__(
        self,
        *,
        store: AccountStore,
        key_wrapper: Callable[[], KeyWrapper],
        settings: AcmeSettings,
        client: AcmeClient,
    ) -> None:
        self.store = store
        self.key_wrapper = key_wrapper
        self.settings = settings
        self.client = client
        self._lock = threading.RLock()
        self._ready = False
        client.on_account_gone = self._gone

    # --- use ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Load the account, or create its key (sealed and stored first) and register it.

        What the configuration alone can tell (EAB required but not set, its variable
        unset) is refused before a key exists. When the server refuses the registration
        (a wrong EAB key), a key made for it is removed again: nothing is left behind.
        """
        with self._lock:
            if self._ready:
                return
            row = self.store.load()
            registering = row is None or row.status != "valid" or not row.account_url
            if registering:
                self._binding()
            made: SavedKey | None = None
            if row is None or row.status == "deactivated":
                made = self._new_key()
                row = made.account
            self.client.use_key(
                self._unseal(row), row.account_url if row.status == "valid" else None
            )
            if self.client.account_url is None:
                try:
                    self._register()
                except ConfigError:
                    self.client.forget_account()
                    if made is not None:
                        self.store.restore(made)
                    raise
            self._ready = True

    def load(self) -> bool:
        """Use the stored account if there is a registered one; never registers (preflight)."""
        with self._lock:
            if self._ready:
                return True
            row = self.store.load()
            if row is None or row.status != "valid" or not row.account_url:
                return False
            self.client.use_key(self._unseal(row), row.account_url)
            return True

    def stored_status(self) -> str | None:
        row = self.store.load()
        return row.status if row is not None else None

    def deactivate(self) -> str:
        """RFC 8555 section 7.3.6. The next issuance registers a new account with a new key.

        Only a registered account is deactivated: registering one just to deactivate it
        would leave the CA an account nobody asked for.
        """
        with self._lock:
            if not self.load():
                raise ValidationError(
                    f"No registered account for issuer {self.settings.name}; nothing to deactivate."
                )
            url = self.client.account_url
            self.client.deactivate_account()
            self.store.update(status="deactivated")
            self._ready = False
            self.client.forget_account()
            return str(url)

    def backoff_until(self) -> datetime | None:
        row = self.store.load()
        return row.retry_after if row is not None else None

    def record_backoff(self, when: datetime | None) -> None:
        """Remember the server's Retry-After, so that later attempts wait for it too.

        The later time wins: an answer without Retry-After, or with an earlier one, never
        shortens a wait the server asked for before.
        """
        row = self.store.load()
        if row is None or when is None:
            return
        if row.retry_after is None or when > row.retry_after:
            self.store.update(retry_after=when)

    # --- internals ---------------------------------------------------------------------

    def _gone(self, failed_url: str | None) -> None:
        """accountDoesNotExist: the server forgot us (Pebble restart, CA-side cleanup)."""
        with self._lock:
            if self.client.account_url != failed_url:
                return  # another order already registered again
            sys.stderr.write(
                f"certman: the ACME server {self.settings.directory} no longer knows account "
                f"{failed_url} of issuer {self.settings.name}; registering it again.\n"
            )
            log.info("ACME account %s is gone; registering again", failed_url)
            assert self.store.load() is not None
            self.client.forget_account()
            self._register()

    def _register(self) -> None:
        eab = self._binding()
        try:
            url = self.client.new_account(email=self.settings.email, eab=eab)
        except ProblemError as e:
            if eab is None:
                raise
            raise ConfigError(
                f"The ACME server refused the External Account Binding (eab_kid "
                f"{self.settings.eab_kid!r}): {e.message.split(': ', 1)[-1]} Check eab_kid and "
                f"the key in ${self.settings.eab_hmac_env} ({self.settings.table})."
            ) from None
        self.store.update(account_url=url, status="valid", clear_retry_after=True)

    def _binding(self) -> tuple[str, str] | None:
        """The EAB kid and HMAC key to register with; ConfigError when the server needs one."""
        info = self.client.directory_info()
        eab = self._eab()
        if info.external_account_required and eab is None:
            raise ConfigError(
                f"The ACME server {self.settings.directory} requires External Account Binding; "
                f"set eab_kid and eab_hmac_env in {self.settings.table}."
            )
        return eab

    def _eab(self) -> tuple[str, str] | None:
        if not self.settings.eab_kid or not self.settings.eab_hmac_env:
            return None
        hmac_key = os.environ.get(self.settings.eab_hmac_env, "").strip()
        if not hmac_key:
            raise ConfigError(
                f"The environment variable {self.settings.eab_hmac_env} named by eab_hmac_env "
                f"in {self.settings.table} is not set; it must hold the EAB HMAC key."
            )
        try:
            jose.b64.b64decode(hmac_key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"The EAB HMAC key in ${self.settings.eab_hmac_env} is not base64url."
            ) from None
        return self.settings.eab_kid, hmac_key

    def _new_key(self) -> SavedKey:
        """A fresh account key, sealed and committed before the server ever sees it."""
        key = generate_private_key(self.settings.account_key_type)
        der = private_key_to_der(key)
        sealed = self.key_wrapper().wrap(der, key_context(self.settings.name)).to_json()
        del der, key
        return self.store.save_key(
            StoredAccount(
                key_type=self.settings.account_key_type.value,
                sealed_key=sealed,
                account_url=None,
                status="pending",
                contact=self.settings.email,
                eab_kid=self.settings.eab_kid,
            )
        )

    def _unseal(self, row: StoredAccount) -> jose.JWK:
        der = self.key_wrapper().unwrap(
            WrappedKey.from_json(row.sealed_key), key_context(self.settings.name)
        )
        key = load_private_key_der(der)
        del der
        return jwk_of(key)
