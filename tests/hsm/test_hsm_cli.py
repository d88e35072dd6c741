"""`[kms] type = "pkcs11"` end to end: init, issue, export, doctor, moves, refusals."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.components.softhsm import SoftHsm
from tests.conftest import Cli
from tests.e2e.test_no_plaintext_keys import secrets_of, unsealed_keys
from tests.homestate import snapshot_home

from .conftest import PIN, kms_section, write_config


def sealed_records(home: Path) -> list[dict[str, object]]:
    """Every sealed record in the inventory, parsed."""
    db = sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True)
    try:
        texts = [
            *(r[0] for r in db.execute("SELECT sealed_key FROM revision")),
            *(r[0] for r in db.execute("SELECT root_sealed_key FROM authority")),
            *(r[0] for r in db.execute("SELECT intermediate_sealed_key FROM authority")),
            *(r[0] for r in db.execute("SELECT sealed_key FROM audit_key")),
        ]
    finally:
        db.close()
    return [json.loads(t) for t in texts if t]


@pytest.fixture
def hsm_home(home: Path, softhsm: SoftHsm, hsm_pin: str, key_label: str) -> Path:
    write_config(home, kms_section(softhsm, key_label))
    return home


def test_init_creates_the_wrapping_key_once_and_no_master_key(
    cli: Cli, hsm_home: Path, key_label: str
) -> None:
    first = cli.ok("init")

    assert f"created HSM key '{key_label}' on token 'certman-test'" in first.stdout
    assert not (hsm_home / "master.key").exists()
    second = cli.ok("init")
    assert "created" not in second.stdout
    assert {r["wrapper"] for r in sealed_records(hsm_home)} == {"pkcs11"}


def test_issue_export_and_doctor_on_the_hsm(cli: Cli, hsm_home: Path, tmp_path: Path) -> None:
    cli.ok("init")
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("renew", "web", "--force")
    out = tmp_path / "out"

    cli.ok("export", "web", "--out", str(out))

    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    key = load_pem_private_key((out / "privkey.pem").read_bytes(), password=None)
    assert cert.public_key() == key.public_key()
    records = sealed_records(hsm_home)
    assert len(records) == 2 + 2 + 1  # two leaf revisions, the CA's two keys, the audit key
    assert {r["wrapper"] for r in records} == {"pkcs11"}
    assert all(str(r["key_id"]).startswith("pkcs11:token=certman-test;") for r in records)
    doctor = cli.ok("doctor")
    assert "hsm key" in doctor.stdout and "seals and unseals" in doctor.stdout
    cli.ok("archive", "verify")


def test_no_plaintext_key_under_the_home_or_in_the_token(
    cli: Cli, hsm_home: Path, softhsm: SoftHsm
) -> None:
    cli.ok("init")
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "rsa", "-d", "rsa.example.com", "--key-type", "rsa-2048")

    keys = unsealed_keys(hsm_home)
    assert len(keys) == 2 + 2
    needles = {
        f"{name}: {what}": value
        for name, key in keys.items()
        for what, value in secrets_of(key).items()
    }
    needles["PEM armour"] = b"PRIVATE KEY"
    places = [p for p in hsm_home.rglob("*") if p.is_file()] + softhsm.token_files()
    leaks = [
        f"{path} holds {what}"
        for path in places
        for what, needle in needles.items()
        if needle in path.read_bytes()
    ]
    assert not leaks, "\n".join(leaks)


def test_keys_move_from_the_local_master_key_to_the_hsm_and_back(
    cli: Cli, home: Path, softhsm: SoftHsm, hsm_pin: str, key_label: str
) -> None:
    cli.ok("init")
    cli.ok("issue", "web", "-d", "www.example.com")
    local_only = kms_section(softhsm, key_label).replace('type = "pkcs11"', 'type = "local"')
    write_config(home, local_only)

    moved = cli.ok("keys", "rotate", "--to", "pkcs11")

    assert "4 sealed keys re-sealed with pkcs11" in moved.stdout
    assert {r["wrapper"] for r in sealed_records(home)} == {"pkcs11"}
    write_config(home, kms_section(softhsm, key_label))
    cli.ok("issue", "api", "-d", "api.example.com")
    cli.ok("renew", "web", "--force")  # unseals the CA key on the HSM
    assert {r["wrapper"] for r in sealed_records(home)} == {"pkcs11"}

    back = cli.ok("keys", "rotate", "--to", "local")

    assert "6 sealed keys re-sealed with local" in back.stdout
    assert {r["wrapper"] for r in sealed_records(home)} == {"local"}


def test_init_refuses_when_the_pin_variable_is_unset(
    cli: Cli, home: Path, softhsm: SoftHsm, key_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        home, kms_section(softhsm, key_label, token="certman-other") + 'pin_env = "UNSET_PIN"\n'
    )
    monkeypatch.delenv("UNSET_PIN", raising=False)

    result = cli("init")

    assert result.exit_code == 2
    assert "'UNSET_PIN'" in result.stderr and "not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "certman.db").exists()


def test_an_empty_module_is_refused_when_the_config_loads(cli: Cli, home: Path) -> None:
    write_config(home, '[kms]\ntype = "pkcs11"\n')

    result = cli("init")

    assert result.exit_code == 2
    assert "kms.module is empty" in result.stderr and str(home / "certman.toml") in result.stderr
    assert not (home / "certman.db").exists()


def test_init_refuses_to_replace_a_lost_wrapping_key(
    cli: Cli, hsm_home: Path, softhsm: SoftHsm, key_label: str
) -> None:
    cli.ok("init")
    write_config(hsm_home, kms_section(softhsm, key_label + "-gone"))
    before = snapshot_home(hsm_home)

    result = cli("init")

    assert result.exit_code == 1
    assert "missing but the database already holds sealed keys" in result.stderr
    assert snapshot_home(hsm_home).diff(before) == []


def test_a_wrong_pin_fails_cleanly_and_changes_nothing(
    cli: Cli, hsm_home: Path, softhsm: SoftHsm
) -> None:
    """A fresh process (the in-process token is logged in already) with a wrong PIN."""
    cli.ok("init")
    before = snapshot_home(hsm_home)
    env = {**os.environ, **softhsm.env(), "CERTMAN_HSM_PIN": PIN + "0"}

    run = subprocess.run(
        [sys.executable, "-m", "certman", "--home", str(hsm_home),
         "issue", "web", "-d", "w.example.com"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip

    assert run.returncode == 1, run.stderr
    assert "rejected the PIN" in run.stderr and "$CERTMAN_HSM_PIN" in run.stderr
    assert PIN not in run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot_home(hsm_home).diff(before) == []
