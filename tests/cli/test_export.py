"""`certman export`: the one deliberate way a private key leaves certman."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    pkcs12,
)

from tests.cli.outcomes import assert_error, show
from tests.conftest import Cli

PASSPHRASE = {"P12_PASS": "correct horse battery staple"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


@pytest.fixture
def web(initialised_home: Path, cli: Cli) -> str:
    cli.ok("issue", "web", "-d", "www.example.com")
    return "web"


def test_export_writes_the_pem_files(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli.ok("export", web, "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "privkey.pem",
    ]
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"):
        assert f"wrote {out / name}" in result.stdout
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(cert.serial_number, "x") == show(cli, web)["serial"]
    chain = x509.load_pem_x509_certificates((out / "chain.pem").read_bytes())
    assert [c.subject for c in chain] == [cert.issuer]
    assert (out / "fullchain.pem").read_bytes() == (out / "cert.pem").read_bytes() + (
        out / "chain.pem"
    ).read_bytes()


def test_export_writes_the_private_key_0600_and_the_rest_0644(
    cli: Cli, web: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cli.ok("export", web, "--out", str(out))
    assert mode(out / "privkey.pem") == 0o600
    for name in ("cert.pem", "chain.pem", "fullchain.pem"):
        assert mode(out / name) == 0o644


def test_exported_private_key_matches_the_certificate(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli.ok("export", web, "--out", str(out))
    key = load_pem_private_key((out / "privkey.pem").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert spki(key.public_key()) == spki(cert.public_key())


def test_export_pkcs12_loads_with_the_passphrase(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "p12"
    cli.ok(
        "export",
        web,
        "--out",
        str(out),
        "--format",
        "pkcs12",
        "--passphrase-env",
        "P12_PASS",
        env=PASSPHRASE,
    )
    blob = (out / "web.p12").read_bytes()
    assert mode(out / "web.p12") == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(blob, PASSPHRASE["P12_PASS"].encode())
    assert key is not None and cert is not None
    assert spki(key.public_key()) == spki(cert.public_key())
    assert format(cert.serial_number, "x") == show(cli, web)["serial"]
    assert len(extra) == 1  # the intermediate
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(blob, b"wrong passphrase")


def test_export_pem_with_a_passphrase_encrypts_the_private_key(
    cli: Cli, web: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cli.ok("export", web, "--out", str(out), "--passphrase-env", "P12_PASS", env=PASSPHRASE)
    pem = (out / "privkey.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert mode(out / "privkey.pem") == 0o600
    with pytest.raises(TypeError):  # no password: refused, it is encrypted
        load_pem_private_key(pem, password=None)
    with pytest.raises(ValueError):
        load_pem_private_key(pem, password=b"wrong passphrase")
    key = load_pem_private_key(pem, password=PASSPHRASE["P12_PASS"].encode())
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert spki(key.public_key()) == spki(cert.public_key())
    import json

    events = json.loads(cli.ok("audit", "list", "--json").stdout)
    assert events[-1]["details"]["encrypted"] is True


def test_export_pem_with_an_unset_passphrase_variable_is_refused(
    cli: Cli, web: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    message = assert_error(
        cli("export", web, "--out", str(out), "--passphrase-env", "NOT_SET_X"), 2
    )
    assert "NOT_SET_X" in message
    assert not out.exists()


def test_export_pkcs12_without_a_passphrase_is_refused(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "p12"
    message = assert_error(cli("export", web, "--out", str(out), "--format", "pkcs12"), 2)
    assert "--passphrase-env" in message
    assert not out.exists()


def test_export_pkcs12_with_an_unset_passphrase_variable_is_refused(
    cli: Cli, web: str, tmp_path: Path
) -> None:
    out = tmp_path / "p12"
    result = cli(
        "export", web, "--out", str(out), "--format", "pkcs12", "--passphrase-env", "NOT_SET_X"
    )
    assert "NOT_SET_X" in assert_error(result, 2)
    assert not out.exists()


def test_export_refuses_existing_files_without_force_and_leaves_them(
    cli: Cli, web: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "privkey.pem").write_bytes(b"someone else's key\n")
    message = assert_error(cli("export", web, "--out", str(out)), 2)
    assert "--force" in message
    assert str(out / "privkey.pem") in message
    assert [p.name for p in out.iterdir()] == ["privkey.pem"]
    assert (out / "privkey.pem").read_bytes() == b"someone else's key\n"


def test_export_force_overwrites(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cert.pem").write_bytes(b"old\n")
    (out / "privkey.pem").write_bytes(b"old\n")
    (out / "privkey.pem").chmod(0o644)
    cli.ok("export", web, "--out", str(out), "--force")
    x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    load_pem_private_key((out / "privkey.pem").read_bytes(), password=None)
    assert mode(out / "privkey.pem") == 0o600


def test_export_refuses_an_out_that_is_a_file(cli: Cli, web: str, tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert "not a directory" in assert_error(cli("export", web, "--out", str(out)), 2)


def test_export_refuses_an_unknown_format(cli: Cli, web: str, tmp_path: Path) -> None:
    message = assert_error(cli("export", web, "--out", str(tmp_path / "o"), "--format", "jks"), 2)
    assert "'jks'" in message
    assert not (tmp_path / "o").exists()


def test_export_is_audited_without_the_key(cli: Cli, web: str, tmp_path: Path) -> None:
    import json

    cli.ok("export", web, "--out", str(tmp_path / "out"))
    events = json.loads(cli.ok("audit", "list", "--json").stdout)
    (event,) = [e for e in events if e["action"] == "certificate.export"]
    assert event["subject"] == "web"
    assert event["details"]["format"] == "pem"
    assert "PRIVATE KEY" not in json.dumps(events)
