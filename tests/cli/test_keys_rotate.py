"""`certman keys rotate`: a new master key version, every sealed key re-wrapped under it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from tests.cli.outcomes import show
from tests.conftest import Cli

NAMES = ("web", "api", "mail")


def sealed_key_ids(home: Path) -> list[str]:
    """The master key version of every sealed key in the database (leaves, CAs, audit key)."""
    with sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True) as db:
        sealed = [r[0] for r in db.execute("SELECT sealed_key FROM revision")]
        for root, inter in db.execute(
            "SELECT root_sealed_key, intermediate_sealed_key FROM authority"
        ):
            sealed += [root, inter]
        sealed += [r[0] for r in db.execute("SELECT sealed_key FROM audit_key")]
    return [json.loads(s)["key_id"] for s in sealed]


def master_key_versions(home: Path) -> list[tuple[int, str]]:
    doc = json.loads((home / "master.key").read_text())
    return [(v["version"], v["status"]) for v in doc["versions"]]


def issue_some(cli: Cli) -> None:
    for name in NAMES:
        cli.ok("issue", name, "-d", f"{name}.example.com")
    cli.ok("renew", "web", "--force")
    cli.ok("ca", "create", "corp")


def test_rotate_adds_a_version_and_retires_the_old_one(initialised_home: Path, cli: Cli) -> None:
    result = cli.ok("keys", "rotate")
    assert "version 2 is active" in result.stdout
    assert master_key_versions(initialised_home) == [(1, "retired"), (2, "active")]


def test_after_rotate_every_sealed_key_is_under_the_new_version(
    initialised_home: Path, cli: Cli
) -> None:
    issue_some(cli)
    assert set(sealed_key_ids(initialised_home)) == {"local:v1"}
    result = cli.ok("keys", "rotate")
    ids = sealed_key_ids(initialised_home)
    assert len(ids) == 4 + 4 + 1  # four leaf revisions; two CAs with two keys each; audit key
    assert set(ids) == {"local:v2"}
    assert f"{len(ids)} sealed keys re-wrapped" in result.stdout


def test_after_rotate_every_certificate_still_exports_with_its_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    issue_some(cli)
    cli.ok("keys", "rotate")
    for name in NAMES:
        out = tmp_path / name
        cli.ok("export", name, "--out", str(out))
        key = load_pem_private_key((out / "privkey.pem").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
        assert key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        ) == cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_after_rotate_the_archive_verifies_and_doctor_is_happy(
    initialised_home: Path, cli: Cli
) -> None:
    issue_some(cli)
    cli.ok("keys", "rotate")
    assert "4 archived bundles present, intact and readable" in cli.ok("archive", "verify").stdout
    cli.ok("doctor")


def test_after_rotate_the_cas_still_sign_and_renewals_work(
    initialised_home: Path, cli: Cli
) -> None:
    issue_some(cli)
    cli.ok("keys", "rotate")
    cli.ok("issue", "new", "-d", "new.example.com", "--issuer", "corp")
    cli.ok("renew", "api", "--force")
    assert show(cli, "api")["revision"] == 2
    assert set(sealed_key_ids(initialised_home)) == {"local:v2"}


def test_rotating_twice_keeps_every_key_readable(initialised_home: Path, cli: Cli) -> None:
    issue_some(cli)
    cli.ok("keys", "rotate")
    assert "version 3 is active" in cli.ok("keys", "rotate").stdout
    assert master_key_versions(initialised_home) == [
        (1, "retired"),
        (2, "retired"),
        (3, "active"),
    ]
    assert set(sealed_key_ids(initialised_home)) == {"local:v3"}
    cli.ok("archive", "verify")
    cli.ok("audit", "verify")


def test_the_master_key_file_stays_private_after_rotation(initialised_home: Path, cli: Cli) -> None:
    cli.ok("keys", "rotate")
    assert (initialised_home / "master.key").stat().st_mode & 0o777 == 0o600
