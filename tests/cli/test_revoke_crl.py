"""`certman revoke` and `certman ca crl`: revoked serials listed with their reasons."""

from __future__ import annotations

import json
import sqlite3
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


# --- keyCompromise: the key is revoked, not one certificate --------------------------------


def revision_keys(home: Path) -> list[tuple[int, str, bytes]]:
    """(number, state, public key) of every revision of ``web``, from the inventory."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    with sqlite3.connect(home / "certman.db") as db:
        rows = db.execute(
            "SELECT number, state, certificate_pem FROM revision ORDER BY number"
        ).fetchall()
    return [
        (
            number,
            state,
            x509.load_pem_x509_certificate(pem.encode())
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        )
        for number, state, pem in rows
    ]


def crl_reasons(cli: Cli, out: Path) -> dict[str, x509.ReasonFlags]:
    return {
        format(entry.serial_number, "x"): entry.extensions.get_extension_for_class(
            x509.CRLReason
        ).value.reason
        for entry in crl_of(cli, "default", out)
    }


def test_a_key_revoked_for_key_compromise_is_never_reused_by_a_renewal(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    cli.ok("revoke", "web", "--reason", "keyCompromise")
    result = cli.ok("renew", "web")
    assert "new key was generated" in result.stderr
    assert "keyCompromise" in result.stderr
    (_, _, revoked), (_, state, renewed) = revision_keys(initialised_home)
    assert state == "active"
    assert renewed != revoked
    # reuse_key still holds for the new key: the next renewal keeps it and says nothing
    result = cli.ok("renew", "web", "--force")
    assert result.stderr == ""
    assert revision_keys(initialised_home)[2][2] == renewed


def test_key_compromise_revokes_every_unexpired_revision_with_that_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    first = show(cli, "web")["serial"]
    cli.ok("renew", "web", "--force")
    second = show(cli, "web")["serial"]
    result = cli.ok("revoke", "web", "--reason", "keyCompromise")
    assert f"serial {second} revoked (keyCompromise)" in result.stdout
    assert f"revision 1 (serial {first}) certifies the same key; revoked too" in result.stdout
    assert "never reused" in result.stdout
    assert crl_reasons(cli, tmp_path / "c.crl") == {
        first: x509.ReasonFlags.key_compromise,
        second: x509.ReasonFlags.key_compromise,
    }
    assert [state for _, state, _ in revision_keys(initialised_home)] == ["revoked", "revoked"]
    revokes = [
        e["details"]
        for e in json.loads(cli.ok("audit", "list", "--json").stdout)
        if e["action"] == "certificate.revoke"
    ]
    assert [(d["revision"], d.get("shares_key_with")) for d in revokes] == [(2, None), (1, 2)]


def test_another_reason_revokes_only_the_current_revision(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    cli.ok("renew", "web", "--force")
    second = show(cli, "web")["serial"]
    result = cli.ok("revoke", "web", "--reason", "superseded")
    assert "revoked too" not in result.stdout
    assert crl_reasons(cli, tmp_path / "c.crl") == {second: x509.ReasonFlags.superseded}
    assert [state for _, state, _ in revision_keys(initialised_home)] == ["superseded", "revoked"]


def test_key_compromise_spares_revisions_with_other_keys_and_expired_ones(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "10d")
    cli.ok("renew", "web", "--force")  # a new key
    cli.ok("issue", "api", "-d", "api.example.com", "--validity", "10d", "--reuse-key")
    expired = show(cli, "api")["serial"]
    cli_clock.advance(timedelta(days=11))
    cli.ok("renew", "--due")  # web revision 3, api revision 2 (same key, revision 1 expired)
    cli.ok("revoke", "web", "--reason", "keyCompromise")
    cli.ok("revoke", "api", "--reason", "keyCompromise")
    reasons = crl_reasons(cli, tmp_path / "c.crl")
    assert set(reasons) == {show(cli, "web")["serial"], show(cli, "api")["serial"]}
    assert expired not in reasons


def test_key_compromise_upgrades_an_earlier_revocation_of_the_same_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    first = show(cli, "web")["serial"]
    cli.ok("revoke", "web", "--reason", "superseded")
    cli.ok("renew", "web")  # reuses the key: superseded says nothing about the key
    second = show(cli, "web")["serial"]
    cli.ok("revoke", "web", "--reason", "keyCompromise")
    assert crl_reasons(cli, tmp_path / "c.crl") == {
        first: x509.ReasonFlags.key_compromise,
        second: x509.ReasonFlags.key_compromise,
    }
