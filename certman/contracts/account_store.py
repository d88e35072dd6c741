"""The ACME account store: where an issuer's sealed account key and account URL are kept.

The inventory implements it (certman.inventory.acme_accounts); the ACME client reads and
writes its account through it, never through the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class StoredAccount:
    """One issuer's account at one directory. ``sealed_key`` is the WrappedKey JSON of the
    account key (never the key itself); ``status`` is "pending", "valid" or "deactivated"."""

    key_type: str
    sealed_key: str
    account_url: str | None
    status: str
    contact: str | None
    eab_kid: str | None
    retry_after: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class SavedKey:
    """What ``save_key`` stored. ``ours`` is False when another process stored a key first:
    ``account`` is then theirs, and it must be used instead of the one offered."""

    account: StoredAccount
    replaced: StoredAccount | None  # what the saved key overwrote; None: a new account
    ours: bool


class AccountStore(Protocol):
    """The account of one issuer at one directory, safe for several processes."""

    def load(self) -> StoredAccount | None:
        """The stored account, or None when there is none."""
        ...

    def save_key(self, account: StoredAccount) -> SavedKey:
        """Store a new account key (committed before it returns), replacing the stored
        key, URL, status, contact and EAB kid; keeps ``retry_after``."""
        ...

    def restore(self, saved: SavedKey) -> None:
        """Undo ``save_key`` when the server refused the new key: the replaced values come
        back, or the account is removed when there was none. Nothing for a key not ours."""
        ...

    def update(
        self,
        *,
        account_url: str | None = None,
        status: str | None = None,
        retry_after: datetime | None = None,
        clear_retry_after: bool = False,
    ) -> None:
        """Change the fields given (not None) of the stored account; ``clear_retry_after``
        forgets the server's Retry-After."""
        ...
