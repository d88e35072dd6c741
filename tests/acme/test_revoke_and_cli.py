"""`certman revoke` at the CA, and `certman issuer list / check` on ACME issuers."""

from __future__ import annotations

import json
import socket

from sqlmodel import select

from certman.inventory.tables import AcmeAccount
from tests.acme.conftest import AcmeHome


def test_revoke_revokes_at_the_ca(acme_home: AcmeHome) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "revoke.example.com").exit_code == 0
    acme_home.verified("web", "revoke.example.com")
    (rev,) = acme_home.revisions("web")
    assert rev.serial
    assert acme_home.pebble.cert_status(int(rev.serial, 16))["Status"] == "Valid"
    result = acme_home.cli("revoke", "web", "--reason", "keyCompromise")
    assert result.exit_code == 0, result.stderr
    assert acme_home.pebble.cert_status(int(rev.serial, 16))["Status"] == "Revoked"
    (rev,) = acme_home.revisions("web")
    assert rev.state == "revoked"


def account_rows(acme_home: AcmeHome) -> list[AcmeAccount]:
    rt = acme_home.runtime()
    with rt.session() as session:
        rows = list(session.exec(select(AcmeAccount)).all())
    rt.engine.dispose()
    return rows


def test_revoke_after_deactivation_signs_with_the_certificate_key(acme_home: AcmeHome) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "revoke-deact.example.com").exit_code == 0
    rev = acme_home.verified("web", "revoke-deact.example.com")
    assert rev.serial
    assert acme_home.cli("issuer", "deactivate", "pebble", "--yes").exit_code == 0
    (deactivated,) = account_rows(acme_home)
    result = acme_home.cli("revoke", "web", "--reason", "keyCompromise")
    assert result.exit_code == 0, result.stderr
    assert acme_home.pebble.cert_status(int(rev.serial, 16))["Status"] == "Revoked"
    (row,) = account_rows(acme_home)
    assert (row.status, row.account_url) == ("deactivated", deactivated.account_url), (
        "revoking must not register a new account"
    )


def test_revoke_after_the_account_is_lost_signs_with_the_certificate_key(
    acme_home: AcmeHome,
) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "revoke-lost.example.com").exit_code == 0
    rev = acme_home.verified("web", "revoke-lost.example.com")
    assert rev.serial
    rt = acme_home.runtime()
    with rt.session() as session:  # the CA no longer knows the stored account
        row = session.exec(select(AcmeAccount)).one()
        assert row.account_url
        row.account_url = row.account_url.rsplit("/", 1)[0] + "/999999"
        session.add(row)
        session.commit()
        lost = row.account_url
    rt.engine.dispose()
    result = acme_home.cli("revoke", "web")
    assert result.exit_code == 0, result.stderr
    assert "registering it again" not in result.stderr
    assert acme_home.pebble.cert_status(int(rev.serial, 16))["Status"] == "Revoked"
    (after,) = account_rows(acme_home)
    assert after.account_url == lost, "revoking must not register the account again"


def test_issuer_list_shows_acme_issuers_and_their_accounts(acme_home: AcmeHome) -> None:
    acme_home.configure()
    before = json.loads(acme_home.cli("issuer", "list", "--json").stdout)
    assert {"name": "default", "type": "private-ca", "source": "inventory"} in before
    (acme,) = [v for v in before if v["name"] == "pebble"]
    assert acme["account"] == "not registered"
    assert acme["directory"] == acme_home.pebble.directory_url
    assert acme_home.issue("web", "list.example.com").exit_code == 0
    acme_home.verified("web", "list.example.com")
    text = acme_home.cli("issuer", "list").stdout
    assert "pebble" in text and "account valid" in text and "http-01" in text


def test_issuer_check_prints_each_check(acme_home: AcmeHome) -> None:
    acme_home.configure()
    fresh = acme_home.cli("issuer", "check", "pebble")
    assert fresh.exit_code == 0, fresh.stdout
    assert "[ok  ] account    not registered yet" in fresh.stdout
    assert acme_home.issue("web", "check.example.com").exit_code == 0
    acme_home.verified("web", "check.example.com")
    result = acme_home.cli("issuer", "check", "pebble")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert [line[7:].split()[0] for line in lines] == ["directory", "account", "solver"]
    assert all(line.startswith("[ok  ]") for line in lines)
    assert "is valid" in lines[1] and "no ARI" in lines[0]


def test_issuer_check_fails_with_exit_1_when_a_check_fails(acme_home: AcmeHome) -> None:
    acme_home.configure()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", acme_home.pebble.http_port))
        busy.listen()
        result = acme_home.cli("issuer", "check", "pebble")
    assert result.exit_code == 1
    assert "[FAIL] solver" in result.stdout and "already in use" in result.stdout
    assert "[ok  ] directory" in result.stdout


def test_issuer_check_on_an_unreachable_directory(acme_home: AcmeHome, other_port: int) -> None:
    acme_home.configure(directory=f"https://127.0.0.1:{other_port}/dir")
    result = acme_home.cli("issuer", "check", "pebble")
    assert result.exit_code == 1
    assert "[FAIL] directory" in result.stdout and "unreachable" in result.stdout


def test_issuer_check_of_a_private_ca(acme_home: AcmeHome) -> None:
    result = acme_home.cli("issuer", "check", "default")
    assert result.exit_code == 0 and "no remote checks" in result.stdout


def test_deactivate_refuses_a_private_ca(acme_home: AcmeHome) -> None:
    result = acme_home.cli("issuer", "deactivate", "default", "--yes")
    assert result.exit_code == 2 and "No [issuers.default]" in result.stderr
