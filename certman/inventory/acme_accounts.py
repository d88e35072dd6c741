"""The ACME account store over the acme_account table (certman.contracts.account_store)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlmodel import Session, select

from certman.clock import Clock
from certman.contracts.account_store import SavedKey, StoredAccount
from certman.inventory.tables import AcmeAccount

# What save_key overwrites on a stored account, and restore puts back.
_KEY_FIELDS = ("key_type", "sealed_key", "account_url", "status", "contact", "eab_kid")


def _stored(row: AcmeAccount) -> StoredAccount:
    return StoredAccount(
        key_type=row.key_type,
        sealed_key=row.sealed_key,
        account_url=row.account_url,
        status=row.status,
        contact=row.contact,
        eab_kid=row.eab_kid,
        retry_after=row.retry_after,
    )


class InventoryAccountStore:
    """The account of ``issuer`` at ``directory``: one row, unique per (issuer, directory)."""

    def __init__(
        self,
        *,
        session: Callable[[], AbstractContextManager[Session]],
        clock: Clock,
        issuer: str,
        directory: str,
    ) -> None:
        self._session = session
        self._clock = clock
        self.issuer = issuer
        self.directory = directory

    def _row(self, session: Session) -> AcmeAccount | None:
        return session.exec(
            select(AcmeAccount)
            .where(AcmeAccount.issuer == self.issuer)
            .where(AcmeAccount.directory == self.directory)
        ).first()

    def load(self) -> StoredAccount | None:
        with self._session() as session:
            row = self._row(session)
            return _stored(row) if row is not None else None

    def save_key(self, account: StoredAccount) -> SavedKey:
        now = self._clock.now()
        with self._session() as session:
            row = self._row(session)
            replaced = _stored(row) if row is not None else None
            if row is None:
                row = AcmeAccount(
                    issuer=self.issuer,
                    directory=self.directory,
                    key_type=account.key_type,
                    sealed_key=account.sealed_key,
                    created_at=now,
                )
            for name in _KEY_FIELDS:
                setattr(row, name, getattr(account, name))
            row.updated_at = now
            session.add(row)
            try:
                session.commit()
            except SQLIntegrityError:  # another process created it first: use theirs
                session.rollback()
                found = self.load()
                assert found is not None
                return SavedKey(account=found, replaced=None, ours=False)
            session.refresh(row)
            return SavedKey(account=_stored(row), replaced=replaced, ours=True)

    def restore(self, saved: SavedKey) -> None:
        if not saved.ours:
            return
        with self._session() as session:
            row = self._row(session)
            if row is None:
                return
            if saved.replaced is None:
                session.delete(row)
            else:
                for name in _KEY_FIELDS:
                    setattr(row, name, getattr(saved.replaced, name))
                session.add(row)
            session.commit()

    def update(
        self,
        *,
        account_url: str | None = None,
        status: str | None = None,
        retry_after: datetime | None = None,
        clear_retry_after: bool = False,
    ) -> None:
        with self._session() as session:
            row = self._row(session)
            if row is None:
                raise LookupError(f"no ACME account of issuer {self.issuer} at {self.directory}")
            if account_url is not None:
                row.account_url = account_url
            if status is not None:
                row.status = status
            if clear_retry_after:
                row.retry_after = None
            elif retry_after is not None:
                row.retry_after = retry_after
            row.updated_at = self._clock.now()
            session.add(row)
            session.commit()
