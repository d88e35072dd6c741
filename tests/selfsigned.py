"""Throwaway self-signed certificates for tests (placeholders, unmanaged ACM imports)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    name: str,
    *,
    curve: ec.EllipticCurve | None = None,
    lifetime: timedelta = timedelta(days=30),
    backdate: timedelta = timedelta(0),
) -> tuple[x509.Certificate, bytes]:
    """A certificate for ``name`` (also its SAN) and its PKCS#8 PEM key."""
    curve = curve or ec.SECP256R1()
    key = ec.generate_private_key(curve)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert, pem_key


def self_signed_pem(name: str, **options: object) -> tuple[bytes, bytes]:
    """``self_signed`` as (certificate PEM, key PEM)."""
    cert, key = self_signed(name, **options)  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM), key
