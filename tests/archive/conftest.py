"""Fixtures for archive tests: a master key, an EC P-256 certificate and its sealed key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certman.keywrap import LocalMasterKey
from certman.models import EncryptionContext, WrappedKey


@dataclass(frozen=True, kw_only=True)
class IssuedCertificate:
    certificate_pem: bytes
    certificate_der: bytes
    chain_pem: bytes
    sealed_key: WrappedKey
    serial: int


def _self_signed(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture
def master_key(tmp_path: Path) -> LocalMasterKey:
    return LocalMasterKey.create(tmp_path / "home" / "master-key.json")


@pytest.fixture
def issued(master_key: LocalMasterKey) -> IssuedCertificate:
    certificate, key = _self_signed("www.example.test")
    issuer, _ = _self_signed("Example Test CA")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = EncryptionContext(certificate="www", revision=1, purpose="private-key")
    return IssuedCertificate(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        chain_pem=issuer.public_bytes(serialization.Encoding.PEM),
        sealed_key=master_key.wrap(key_pem, context),
        serial=certificate.serial_number,
    )
