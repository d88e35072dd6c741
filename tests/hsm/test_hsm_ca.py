"""Private CAs whose keys live in a real SoftHSM2 token (`ca create --key-store hsm`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from certman.keywrap.pkcs11_token import Pkcs11Token
from tests.components.softhsm import SoftHsm
from tests.conftest import Cli
from tests.homestate import snapshot_home

from .conftest import TOKEN, kms_section, write_config


@pytest.fixture
def ca_home(cli: Cli, home: Path, softhsm: SoftHsm, hsm_pin: str, key_label: str) -> Path:
    """A home sealing leaf keys with the local master key, with the HSM configured for CAs."""
    write_config(home, kms_section(softhsm, key_label).replace('type = "pkcs11"', 'type = "local"'))
    cli.ok("init")
    return home


def authority_records(home: Path, name: str) -> list[dict[str, object]]:
    db = sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT root_sealed_key, intermediate_sealed_key FROM authority WHERE name = ?",
            (name,),
        ).fetchone()
    finally:
        db.close()
    return [json.loads(text) for text in row]


def openssl_verify(tmp_path: Path, root_pem: str, chain_pem: bytes, leaf_pem: bytes) -> None:
    (tmp_path / "root.pem").write_text(root_pem)
    (tmp_path / "chain.pem").write_bytes(chain_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "chain.pem",
         "leaf.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_an_hsm_ca_signs_leaves_that_verify_and_stores_no_key(
    cli: Cli, ca_home: Path, tmp_path: Path
) -> None:
    created = cli.ok("ca", "create", "vault", "--key-store", "hsm", "--key-type", "ec-p384")
    assert "keys in the HSM" in created.stdout

    cli.ok("issue", "web", "-d", "www.example.com", "--issuer", "vault")
    out = tmp_path / "out"
    cli.ok("export", "web", "--out", str(out))

    view = json.loads(cli.ok("ca", "show", "vault", "--json").stdout)
    assert view["key_store"] == "hsm"
    assert str(view["intermediate_key_uri"]).startswith(f"pkcs11:token={TOKEN};object=")
    openssl_verify(
        tmp_path, view["root_certificate_pem"], (out / "chain.pem").read_bytes(),
        (out / "cert.pem").read_bytes(),
    )  # fmt: skip
    records = authority_records(ca_home, "vault")
    assert {r["wrapper"] for r in records} == {"pkcs11-resident"}
    assert all(r["ct"] == "" and r["edk"] == "" for r in records)  # a reference, no key


def test_an_hsm_ca_signs_its_crl_in_the_token(cli: Cli, ca_home: Path, tmp_path: Path) -> None:
    cli.ok("ca", "create", "vault", "--key-store", "hsm")
    cli.ok("issue", "web", "-d", "www.example.com", "--issuer", "vault")
    cli.ok("revoke", "web", "--reason", "keyCompromise")
    crl_file = tmp_path / "vault.crl"

    cli.ok("ca", "crl", "vault", "--out", str(crl_file))

    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    view = json.loads(cli.ok("ca", "show", "vault", "--json").stdout)
    inter = x509.load_pem_x509_certificate(view["intermediate_certificate_pem"].encode())
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert len(list(crl)) == 1


def test_doctor_signs_with_the_hsm_key_and_key_rotation_leaves_it_alone(
    cli: Cli, ca_home: Path
) -> None:
    cli.ok("ca", "create", "vault", "--key-store", "hsm")
    cli.ok("issue", "web", "-d", "www.example.com", "--issuer", "vault")
    before = authority_records(ca_home, "vault")

    rotated = cli.ok("keys", "rotate")

    # the default CA's two, web's one, the audit key: not vault's, which are in the HSM
    assert "4 sealed keys re-wrapped" in rotated.stdout
    assert authority_records(ca_home, "vault") == before
    doctor = cli.ok("doctor")
    assert "ca vault" in doctor.stdout and "key in the HSM signs" in doctor.stdout
    cli.ok("renew", "web", "--force")


def test_a_key_removed_from_the_token_fails_clearly(
    cli: Cli, ca_home: Path, softhsm: SoftHsm
) -> None:
    cli.ok("ca", "create", "vault", "--key-store", "hsm")
    uri = json.loads(cli.ok("ca", "show", "vault", "--json").stdout)["intermediate_key_uri"]
    label = uri.split("object=")[1].split(";")[0]
    token = Pkcs11Token(module=str(softhsm.module), token_label=TOKEN, pin_env="CERTMAN_HSM_PIN")
    from pkcs11 import ObjectClass

    token.with_session(
        lambda s: s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label).destroy()
    )
    before = snapshot_home(ca_home)

    result = cli("issue", "web", "-d", "www.example.com", "--issuer", "vault")

    assert result.exit_code == 1
    assert "is not on the token" in result.stderr and "Traceback" not in result.stderr
    assert snapshot_home(ca_home).diff(before) == []
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "ca vault" in doctor.stdout


def test_an_hsm_ca_without_a_reachable_token_is_refused_before_anything_changes(
    cli: Cli, ca_home: Path, monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm, key_label: str
) -> None:
    section = kms_section(softhsm, key_label, token="no-such-token")
    write_config(ca_home, section.replace('type = "pkcs11"', 'type = "local"'))
    before = snapshot_home(ca_home)

    result = cli("ca", "create", "vault", "--key-store", "hsm")

    assert result.exit_code == 2
    assert "No PKCS#11 token labelled 'no-such-token'" in result.stderr
    assert snapshot_home(ca_home).diff(before) == []


def test_an_unknown_key_store_is_refused(cli: Cli, ca_home: Path) -> None:
    before = snapshot_home(ca_home)

    result = cli("ca", "create", "vault", "--key-store", "cloud")

    assert result.exit_code == 2 and "--key-store" in result.stderr
    assert snapshot_home(ca_home).diff(before) == []


def test_init_makes_the_default_ca_in_the_hsm_when_configured(
    cli: Cli, home: Path, softhsm: SoftHsm, hsm_pin: str, key_label: str
) -> None:
    section = kms_section(softhsm, key_label).replace('type = "pkcs11"', 'type = "local"')
    write_config(home, section + '\n[ca]\nkey_store = "hsm"\n')

    cli.ok("init")

    assert json.loads(cli.ok("ca", "show", "default", "--json").stdout)["key_store"] == "hsm"
    cli.ok("issue", "web", "-d", "www.example.com")
