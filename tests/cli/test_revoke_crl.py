"""`certman revoke` and `certman ca crl`: revoked serials listed with their reasons."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from certman.clock import FrozenClock
from tests.cli.outcomes import assert_error, show
from tests.conftest import Cli


def crl_of(cli: Cli, ca: str, out: Path) -> x509.CertificateRevocationList:
    cli.ok("ca", "crl", ca, "--out", str(out))
    return x509.load_pem_x509_crl(out.read_bytes())


def intermediate_of(cli: Cli, ca: str = "default") -> x509.Certificate:
    view = json.loads(cli.ok("ca", "show", ca, "--json").stdout)
    return x509.load_pem_x509_certificate(view["intermediate_certificate_pem"].encode())


def test_revoke_marks_the_certificate_revoked(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    serial = show(cli, "web")["serial"]
    result = cli.ok("revoke", "web", "--reason", "keyCompromise")
    assert f"serial {serial} revoked (keyCompromise)" in result.stdout
    view = show(cli, "web")
    assert view["status"] == "revoked"
    assert view["revisions"][0]["state"] == "revoked"


def test_crl_is_signed_by_the_intermediate_and_lists_the_serial_with_its_reason(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "api", "-d", "api.example.com")
    cli.ok("issue", "kept", "-d", "kept.example.com")
    cli.ok("revoke", "web", "--reason", "keyCompromise")
    cli.ok("revoke", "api", "--reason", "superseded")
    crl = crl_of(cli, "default", tmp_path / "default.crl")
    intermediate = intermediate_of(cli)
    assert crl.issuer == intermediate.subject
    assert crl.is_signature_valid(intermediate.public_key())  # type: ignore[arg-type]
    reasons = {
        format(entry.serial_number, "x"): entry.extensions.get_extension_for_class(
            x509.CRLReason
        ).value.reason
        for entry in crl
    }
    assert reasons == {
        show(cli, "web")["serial"]: x509.ReasonFlags.key_compromise,
        show(cli, "api")["serial"]: x509.ReasonFlags.superseded,
    }


def test_crl_of_a_ca_without_revocations_is_empty(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    crl = crl_of(cli, "default", tmp_path / "empty.crl")
    assert len(crl) == 0
    assert crl.is_signature_valid(intermediate_of(cli).public_key())  # type: ignore[arg-type]


def test_crl_numbers_increase(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    numbers = []
    for i in range(2):
        crl = crl_of(cli, "default", tmp_path / f"{i}.crl")
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers[1] > numbers[0]


def test_crl_next_update_follows_the_config(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    (initialised_home / "certman.toml").write_text('[ca]\ncrl_next_update = "2d"\n')
    crl = crl_of(cli, "default", tmp_path / "x.crl")
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=2)


def test_crl_lists_only_the_cas_own_revocations(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("ca", "create", "corp")
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "intranet", "-d", "intranet.example.com", "--issuer", "corp")
    cli.ok("revoke", "web")
    cli.ok("revoke", "intranet", "--reason", "cessationOfOperation")
    corp = crl_of(cli, "corp", tmp_path / "corp.crl")
    assert [format(e.serial_number, "x") for e in corp] == [show(cli, "intranet")["serial"]]
    assert corp.is_signature_valid(intermediate_of(cli, "corp").public_key())  # type: ignore[arg-type]


def test_revoke_is_the_default_reason_unspecified(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    assert "(unspecified)" in cli.ok("revoke", "web").stdout
    (entry,) = list(crl_of(cli, "default", tmp_path / "d.crl"))
    assert format(entry.serial_number, "x") == show(cli, "web")["serial"]


def test_revoking_twice_is_refused(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("revoke", "web")
    assert "already revoked" in assert_error(cli("revoke", "web"), 2)


def test_revoke_refuses_an_unknown_reason(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    message = assert_error(cli("revoke", "web", "--reason", "bored"), 2)
    assert "'bored'" in message
    assert "keyCompromise" in message
    assert show(cli, "web")["status"] == "active"


def test_a_revoked_certificate_is_not_renewed_when_due(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    cli.ok("revoke", "web")
    cli_clock.advance(timedelta(days=25))
    assert cli.ok("renew", "--due").stdout.strip() == "Nothing is due."


def test_crl_refuses_an_unknown_ca(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    message = assert_error(cli("ca", "crl", "nope", "--out", str(tmp_path / "x.crl")), 2)
    assert "'nope'" in message
    assert "default" in message


def test_crl_refuses_an_out_file_in_a_missing_directory(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    message = assert_error(cli("ca", "crl", "default", "--out", str(tmp_path / "no/x.crl")), 2)
    assert "--out" in message
