"""The ACME account: registered on first use, key sealed in the inventory, re-registered if lost."""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import josepy as jose
from certman.acme_client.client import AcmeClient
from certman.acme_client.jws import jwk_of
from certman.acme_client.problems import ProblemError
from certman.acme_client.settings import AcmeSettings
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlmodel import select

from certman.errors import ConfigError, ValidationError
from certman.inventory.tables import AcmeAccount
from certman.models import EncryptionContext, WrappedKey
from certman.pki import generate_private_key, load_private_key_der, private_key_to_der

if TYPE_CHECKING:
    from certman.service.runtime import Runtime  # the core passes itself in

log = logging.getLogger("certman.acme")

PURPOSE = "acme-account-key"


def key_context(issuer: str) -> EncryptionContext:
    """What the account key is sealed to: this issuer's account, nothing else."""
    return EncryptionContext(certificate=f"acme:{issuer}", revision=0, purpose=PURPOSE)


# What _new_key overwrites on a deactivated account's row, restored by _discard.
_KEY_FIELDS = ("key_type", "sealed_key", "account_url", "status", "contact", "eab_kid")


@dataclass(frozen=True)
class _MadeKey:
    row: AcmeAccount
    before: dict[str, object] | None  # the replaced row's values; None: a new row
    ours: bool  # False: another process created the row first


class Account:
    """The account of one issuer at one directory; safe to use from concurrent orders."""

    def __init__(self, runtime: Runtime, settings: AcmeSettings, client: AcmeClient) -> None:
        self.runtime = runtime
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
            row = self._row()
            registering = row is None or row.status != "valid" or not row.account_url
            if registering:
                self._binding()
            made: _MadeKey | None = None
            if row is None or row.status == "deactivated":
                made = self._new_key(row)
                row = made.row
            self.client.use_key(
                self._unseal(row), row.account_url if row.status == "valid" else None
            )
            if self.client.account_url is None:
                try:
                    self._register(row)
                except ConfigError:
                    self.client.forget_account()
                    if made is not None:
                        self._discard(made)
                    raise
            self._ready = True

    def load(self) -> bool:
        """Use the stored account if there is a registered one; never registers (preflight)."""
        with self._lock:
            if self._ready:
                return True
            row = self._row()
            if row is None or row.status != "valid" or not row.account_url:
                return False
            self.client.use_key(self._unseal(row), row.account_url)
            return True

    def stored_status(self) -> str | None:
        row = self._row()
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
            self._update(status="deactivated")
            self._ready = False
            self.client.forget_account()
            return str(url)

    def backoff_until(self) -> datetime | None:
        row = self._row()
        return row.retry_after if row is not None else None

    def record_backoff(self, when: datetime | None) -> None:
        """Remember the server's Retry-After, so that later attempts wait for it too.

        The later time wins: an answer without Retry-After, or with an earlier one, never
        shortens a wait the server asked for before.
        """
        row = self._row()
        if row is None or when is None:
            return
        if row.retry_after is None or when > row.retry_after:
            self._update(retry_after=when)

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
            row = self._row()
            assert row is not None
            self.client.forget_account()
            self._register(row)

    def _register(self, row: AcmeAccount) -> None:
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
        self._update(account_url=url, status="valid", retry_after=None)

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

    def _new_key(self, old: AcmeAccount | None) -> _MadeKey:
        """A fresh account key, sealed and committed before the server ever sees it."""
        key = generate_private_key(self.settings.account_key_type)
        der = private_key_to_der(key)
        sealed = self.runtime.key_wrapper.wrap(der, key_context(self.settings.name)).to_json()
        del der, key
        now = self.runtime.clock.now()
        before = {name: getattr(old, name) for name in _KEY_FIELDS} if old is not None else None
        with self.runtime.session() as session:
            row = old or AcmeAccount(
                issuer=self.settings.name,
                directory=self.settings.directory,
                key_type=self.settings.account_key_type.value,
                sealed_key=sealed,
                created_at=now,
            )
            row.key_type = self.settings.account_key_type.value
            row.sealed_key = sealed
            row.account_url = None
            row.status = "pending"
            row.contact = self.settings.email
            row.eab_kid = self.settings.eab_kid
            row.updated_at = now
            session.add(row)
            try:
                session.commit()
            except SQLIntegrityError:  # another process created it first: use theirs
                session.rollback()
                found = self._row()
                assert found is not None
                return _MadeKey(row=found, before=None, ours=False)
            session.refresh(row)
            return _MadeKey(row=row, before=before, ours=True)

    def _discard(self, made: _MadeKey) -> None:
        """Undo _new_key after the server refused to register the key (it has no account)."""
        if not made.ours:
            return
        with self.runtime.session() as session:
            row = session.get(AcmeAccount, made.row.id)
            if row is None:
                return
            if made.before is None:
                session.delete(row)
            else:
                for name, value in made.before.items():
                    setattr(row, name, value)
                session.add(row)
            session.commit()

    def _unseal(self, row: AcmeAccount) -> jose.JWK:
        der = self.runtime.key_wrapper.unwrap(
            WrappedKey.from_json(row.sealed_key), key_context(self.settings.name)
        )
        key = load_private_key_der(der)
        del der
        return jwk_of(key)

    def _row(self) -> AcmeAccount | None:
        with self.runtime.session() as session:
            return session.exec(
                select(AcmeAccount)
                .where(AcmeAccount.issuer == self.settings.name)
                .where(AcmeAccount.directory == self.settings.directory)
            ).first()

    def _update(self, **values: object) -> None:
        with self.runtime.session() as session:
            row = session.exec(
                select(AcmeAccount)
                .where(AcmeAccount.issuer == self.settings.name)
                .where(AcmeAccount.directory == self.settings.directory)
            ).one()
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self.runtime.clock.now()
            session.add(row)
            session.commit()
