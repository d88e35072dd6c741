"""No plaintext private key anywhere under the home after a full run of the installed CLI.

The test learns every private key certman made (one from an export outside the home, the
rest by unsealing them in this process), then searches every file under the home (the
database and its -wal/-shm files included) for the PEM armour, each key's PKCS#8 and
SEC1/PKCS#1 DER, their base64, and each key's raw private scalar or primes, and for the
audit chain's HMAC key. The output of every command is searched as well.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from sqlmodel import select

from certman.config import load_config
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.models import WrappedKey
from certman.pki import load_private_key_der
from certman.service.authorities import key_context as ca_key_context
from certman.service.runtime import Runtime
from certman.service.steps import key_context
from tests.e2e.conftest import CertmanProcess

pytestmark = pytest.mark.e2e


def secrets_of(key: object) -> dict[str, bytes]:
    """Byte strings that would give the key away if found anywhere."""
    found: dict[str, bytes] = {}
    for label, fmt in (
        ("PKCS#8", PrivateFormat.PKCS8),
        ("SEC1/PKCS#1", PrivateFormat.TraditionalOpenSSL),
    ):
        der = key.private_bytes(Encoding.DER, fmt, NoEncryption())  # type: ignore[attr-defined]
        found[f"{label} DER"] = der
        found[f"{label} base64"] = base64.b64encode(der)[:64]  # the first PEM line
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        scalar = key.private_numbers().private_value.to_bytes(size, "big")
        found["EC private scalar"] = scalar
        found["EC private scalar hex"] = scalar.hex().encode()
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        for part in ("d", "p", "q"):
            value: int = getattr(numbers, part)
            found[f"RSA {part}"] = value.to_bytes((value.bit_length() + 7) // 8, "big")
    else:  # pragma: no cover - certman makes only EC and RSA keys
        raise AssertionError(f"unexpected key type {type(key).__name__}")
    return found


def unsealed_keys(home: Path) -> dict[str, object]:
    """Every private key sealed in the inventory, unsealed here in memory."""
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    keys: dict[str, object] = {}
    with rt.session() as session:
        for rev, name in session.exec(
            select(Revision, ManagedCertificate.name).join(
                ManagedCertificate, ManagedCertificate.id == Revision.certificate_id
            )
        ).all():
            assert rev.sealed_key is not None
            der = rt.key_wrapper.unwrap(
                WrappedKey.from_json(rev.sealed_key), key_context(name, rev.number)
            )
            keys[f"{name} revision {rev.number}"] = load_private_key_der(der)
        for ca in session.exec(select(Authority)).all():
            for role in ("root", "intermediate"):
                sealed = WrappedKey.from_json(getattr(ca, f"{role}_sealed_key"))
                der = rt.key_wrapper.unwrap(sealed, ca_key_context(ca.name, role))
                keys[f"CA {ca.name} {role}"] = load_private_key_der(der)
    rt.engine.dispose()
    return keys


def test_a_full_run_leaves_no_plaintext_private_key_under_the_home(
    certman: CertmanProcess, tmp_path: Path
) -> None:
    certman.ok("init")
    # An open connection keeps the database's -wal and -shm files in place (SQLite removes
    # them when the last connection closes), so they are searched too.
    holder = sqlite3.connect(certman.home / "certman.db")
    holder.execute("SELECT count(*) FROM certificate").fetchone()
    try:
        certman.ok("issue", "p256", "-d", "p256.example.com", "--key-type", "ec-p256")
        certman.ok("issue", "p384", "-d", "p384.example.com", "--key-type", "ec-p384")
        certman.ok("issue", "rsa", "-d", "rsa.example.com", "--key-type", "rsa-2048")
        certman.ok("renew", "p256", "--force")
        certman.ok("revoke", "p384", "--reason", "keyCompromise")
        certman.ok("keys", "rotate")
        certman.ok("ca", "create", "corp", "--key-type", "ec-p384")
        certman.ok("issue", "intranet", "-d", "intranet.example.com", "--issuer", "corp")
        outside = tmp_path / "exported"
        certman.ok("export", "rsa", "--out", str(outside))
        certman.ok("doctor")
        files = [p for p in certman.home.rglob("*") if p.is_file()]
        contents = {p.relative_to(certman.home).as_posix(): p.read_bytes() for p in files}
    finally:
        holder.close()

    assert {"certman.db", "certman.db-wal", "certman.db-shm", "master.key"} <= contents.keys()
    assert sum(name.endswith(".bundle") for name in contents) == 5
    exported = load_pem_private_key((outside / "privkey.pem").read_bytes(), password=None)
    keys = unsealed_keys(certman.home)
    # 2 + 1 + 1 + 1 leaf revisions; 2 CAs with a root and an intermediate key each
    assert len(keys) == 5 + 4
    assert any(pkcs8(k) == pkcs8(exported) for k in keys.values())
    needles = {
        f"{label}: {what}": value
        for label, key in {"exported rsa": exported, **keys}.items()
        for what, value in secrets_of(key).items()
    }
    needles["PEM armour"] = b"PRIVATE KEY"
    audit_key = unsealed_audit_key(certman.home)
    needles["audit key"] = audit_key
    needles["audit key hex"] = audit_key.hex().encode()
    needles["audit key base64"] = base64.b64encode(audit_key)
    leaks = [
        f"{name} holds {what}"
        for name, data in contents.items()
        for what, needle in needles.items()
        if needle in data
    ]
    assert not leaks, "\n".join(leaks)

    for run in certman.runs:
        for stream in (run.stdout, run.stderr):
            assert "PRIVATE KEY" not in stream, run.args
            assert "-----BEGIN" not in stream, run.args
            for what, needle in needles.items():
                if what.endswith(("base64", "hex")):
                    assert needle.decode() not in stream, (run.args, what)


def unsealed_audit_key(home: Path) -> bytes:
    """The audit chain's HMAC key, unsealed here in memory."""
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    with rt.session() as session:
        key = rt.audit_seal.stored_key(session)
    rt.engine.dispose()
    assert key is not None
    return key.secret


def pkcs8(key: object) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())  # type: ignore[attr-defined, no-any-return]
