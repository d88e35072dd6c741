"""ACME accounts: sealed key, EAB, re-registration after a Pebble restart, deactivation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from certman.acme_client.account import key_context
from sqlmodel import select

from certman.inventory.tables import AcmeAccount
from certman.models import WrappedKey
from certman.pki import load_private_key_der, private_key_pem
from tests.acme.conftest import AcmeHome
from tests.components.pebble import Pebble, PebbleOptions

EAB_KID = "kid-1"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
WRONG_KEY = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH"


def accounts(acme_home: AcmeHome) -> list[AcmeAccount]:
    rt = acme_home.runtime()
    with rt.session() as session:
        rows = list(session.exec(select(AcmeAccount)).all())
    rt.engine.dispose()
    return rows


def test_the_account_key_is_sealed_and_the_account_reused(acme_home: AcmeHome) -> None:
    acme_home.configure(email="ops@example.com")
    assert acme_home.issue("one", "one.example.com").exit_code == 0
    acme_home.verified("one", "one.example.com")
    assert acme_home.issue("two", "two.example.com").exit_code == 0
    acme_home.verified("two", "two.example.com")
    (row,) = accounts(acme_home)
    assert row.status == "valid" and row.account_url and row.key_type == "ec-p256"
    assert row.contact == "ops@example.com"
    rt = acme_home.runtime()
    der = rt.key_wrapper.unwrap(WrappedKey.from_json(row.sealed_key), key_context("pebble"))
    key = load_private_key_der(der)
    stored = (acme_home.home / "certman.db").read_bytes()
    for directory_file in acme_home.home.rglob("*"):
        if directory_file.is_file():
            stored += directory_file.read_bytes()
    assert der not in stored, "the account key must never be stored unsealed"
    assert private_key_pem(key) not in stored
    assert b"PRIVATE KEY" not in stored


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    options = PebbleOptions(eab_keys={EAB_KID: EAB_KEY, "kid-2": WRONG_KEY})
    with Pebble(tmp_path_factory.mktemp("pebble-eab"), options) as running:
        yield running


def eab_home(acme_home: AcmeHome, pebble: Pebble, **keys: str) -> AcmeHome:
    acme_home.configure(
        directory=pebble.directory_url,
        ca_bundle=str(pebble.ca_bundle),
        http_address=f"127.0.0.1:{pebble.http_port}",
        **keys,
    )
    acme_home.pebble = pebble
    return acme_home


def test_eab_is_required_by_the_server(acme_home: AcmeHome, eab_pebble: Pebble) -> None:
    home = eab_home(acme_home, eab_pebble)
    result = home.issue("web", "eab.example.com")
    assert result.exit_code == 2
    assert "requires External Account Binding" in result.stderr
    assert "eab_kid and eab_hmac_env" in result.stderr
    assert home.certificate("web") is None and accounts(home) == [], "nothing may be left"


def test_a_wrong_eab_key_is_refused(
    acme_home: AcmeHome, eab_pebble: Pebble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEBBLE_EAB_HMAC", WRONG_KEY)
    home = eab_home(acme_home, eab_pebble, eab_kid=EAB_KID, eab_hmac_env="PEBBLE_EAB_HMAC")
    result = home.issue("web", "eab.example.com")
    assert result.exit_code == 2
    assert "refused the External Account Binding" in result.stderr
    assert "$PEBBLE_EAB_HMAC" in result.stderr and WRONG_KEY not in result.stderr
    assert home.certificate("web") is None, "refused before anything is planned"
    assert accounts(home) == [], "the key the server refused is not kept"


def test_a_missing_eab_variable_is_named(acme_home: AcmeHome, eab_pebble: Pebble) -> None:
    home = eab_home(acme_home, eab_pebble, eab_kid=EAB_KID, eab_hmac_env="CERTMAN_TEST_UNSET")
    result = home.issue("web", "eab.example.com")
    assert result.exit_code == 2
    assert "CERTMAN_TEST_UNSET" in result.stderr and "is not set" in result.stderr
    assert home.certificate("web") is None and accounts(home) == []


def test_the_right_eab_registers_and_issues(
    acme_home: AcmeHome, eab_pebble: Pebble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEBBLE_EAB_HMAC", EAB_KEY)
    home = eab_home(acme_home, eab_pebble, eab_kid=EAB_KID, eab_hmac_env="PEBBLE_EAB_HMAC")
    result = home.issue("web", "eab.example.com")
    assert result.exit_code == 0, result.stderr
    home.verified("web", "eab.example.com")  # against the EAB Pebble's own root
    (row,) = accounts(home)
    assert row.eab_kid == EAB_KID and row.status == "valid"


def test_a_refused_eab_after_deactivation_leaves_the_deactivated_account_as_it_was(
    acme_home: AcmeHome, eab_pebble: Pebble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEBBLE_EAB_HMAC", EAB_KEY)
    home = eab_home(acme_home, eab_pebble, eab_kid=EAB_KID, eab_hmac_env="PEBBLE_EAB_HMAC")
    assert home.issue("web", "eab-deact.example.com").exit_code == 0
    home.verified("web", "eab-deact.example.com")
    assert home.cli("issuer", "deactivate", "pebble", "--yes").exit_code == 0
    (deactivated,) = accounts(home)
    monkeypatch.setenv("PEBBLE_EAB_HMAC", WRONG_KEY)
    result = home.issue("web2", "eab-deact2.example.com")
    assert result.exit_code == 2 and "refused the External Account Binding" in result.stderr
    assert home.certificate("web2") is None
    (row,) = accounts(home)
    assert (row.status, row.account_url, row.sealed_key) == (
        "deactivated",
        deactivated.account_url,
        deactivated.sealed_key,
    )


def test_the_account_is_registered_again_after_a_pebble_restart(
    acme_home: AcmeHome, tmp_path: Path
) -> None:
    with Pebble(tmp_path / "pebble", PebbleOptions()) as own:
        acme_home.pebble = own
        acme_home.configure()
        assert acme_home.issue("before", "before.example.com").exit_code == 0
        acme_home.verified("before", "before.example.com")
        (old,) = accounts(acme_home)
        own.restart_pebble()  # Pebble forgets every account and makes new roots
        result = acme_home.issue("after", "after.example.com")
        assert result.exit_code == 0, result.stderr
        acme_home.verified("after", "after.example.com")  # the restarted run's root
        assert f"no longer knows account {old.account_url}" in result.stderr
        assert "registering it again" in result.stderr
        (new,) = accounts(acme_home)
        assert new.account_url != old.account_url and new.status == "valid"
        assert new.sealed_key == old.sealed_key, "the same sealed key registers again"


def test_deactivate_then_issue_registers_a_new_account(acme_home: AcmeHome) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "deact.example.com").exit_code == 0
    acme_home.verified("web", "deact.example.com")
    (old,) = accounts(acme_home)
    result = acme_home.cli("issuer", "deactivate", "pebble", "--yes")
    assert result.exit_code == 0, result.stderr
    assert f"account {old.account_url} deactivated" in result.stdout
    assert accounts(acme_home)[0].status == "deactivated"
    check = acme_home.cli("issuer", "check", "pebble")
    assert "deactivated" in check.stdout
    assert acme_home.issue("web2", "deact2.example.com").exit_code == 0
    acme_home.verified("web2", "deact2.example.com")
    (new,) = accounts(acme_home)
    assert new.status == "valid" and new.account_url != old.account_url
    assert new.sealed_key != old.sealed_key, "a deactivated account's key is not reused"


def test_deactivate_without_a_registered_account_is_refused(acme_home: AcmeHome) -> None:
    acme_home.configure()
    result = acme_home.cli("issuer", "deactivate", "pebble", "--yes")
    assert result.exit_code == 2
    assert "No registered account for issuer pebble; nothing to deactivate." in result.stderr
    assert "Traceback" not in result.stderr
    assert accounts(acme_home) == [], "no account may be registered just to deactivate it"


def test_deactivating_twice_is_refused_the_second_time(acme_home: AcmeHome) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "twice.example.com").exit_code == 0
    acme_home.verified("web", "twice.example.com")
    assert acme_home.cli("issuer", "deactivate", "pebble", "--yes").exit_code == 0
    (before,) = accounts(acme_home)
    again = acme_home.cli("issuer", "deactivate", "pebble", "--yes")
    assert again.exit_code == 2 and "nothing to deactivate" in again.stderr
    (after,) = accounts(acme_home)
    assert (after.status, after.sealed_key) == ("deactivated", before.sealed_key)
