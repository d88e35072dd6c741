"""The ACME account store over the acme_account table: what the ACME client keeps there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certman.contracts.account_store import StoredAccount
from certman.inventory.acme_accounts import InventoryAccountStore
from certman.service.runtime import Runtime

DIRECTORY = "https://acme.example/dir"


def store(rt: Runtime, issuer: str = "le") -> InventoryAccountStore:
    return InventoryAccountStore(
        session=rt.session, clock=rt.clock, issuer=issuer, directory=DIRECTORY
    )


def new_key(sealed: str = '{"sealed": 1}') -> StoredAccount:
    return StoredAccount(
        key_type="ec-p256",
        sealed_key=sealed,
        account_url=None,
        status="pending",
        contact="ops@example.com",
        eab_kid=None,
    )


def test_a_saved_key_is_what_load_returns(runtime: Runtime) -> None:
    accounts = store(runtime)
    assert accounts.load() is None
    saved = accounts.save_key(new_key())
    assert saved.ours and saved.replaced is None
    assert accounts.load() == new_key()
    assert store(runtime, issuer="other").load() is None  # one account per issuer


def test_update_sets_the_url_and_status_and_keeps_the_later_fields(runtime: Runtime) -> None:
    accounts = store(runtime)
    accounts.save_key(new_key())
    when = datetime(2026, 3, 1, tzinfo=UTC)
    accounts.update(retry_after=when)
    accounts.update(account_url="https://acme.example/acct/1", status="valid")
    loaded = accounts.load()
    assert loaded is not None
    assert (loaded.account_url, loaded.status, loaded.retry_after) == (
        "https://acme.example/acct/1",
        "valid",
        when,
    )
    accounts.update(clear_retry_after=True)
    assert accounts.load().retry_after is None  # type: ignore[union-attr]


def test_restore_removes_a_refused_first_key(runtime: Runtime) -> None:
    accounts = store(runtime)
    accounts.restore(accounts.save_key(new_key()))
    assert accounts.load() is None


def test_restore_puts_back_the_deactivated_account_a_refused_key_replaced(
    runtime: Runtime,
) -> None:
    accounts = store(runtime)
    accounts.save_key(new_key('{"old": 1}'))
    accounts.update(account_url="https://acme.example/acct/1", status="deactivated")
    before = accounts.load()
    saved = accounts.save_key(new_key('{"new": 2}'))
    assert saved.replaced == before
    assert accounts.load().sealed_key == '{"new": 2}'  # type: ignore[union-attr]
    accounts.restore(saved)
    assert accounts.load() == before


def test_update_of_an_account_never_saved_is_refused(runtime: Runtime) -> None:
    with pytest.raises(LookupError):
        store(runtime).update(status="valid", retry_after=datetime.now(UTC) + timedelta(1))
