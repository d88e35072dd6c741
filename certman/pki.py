"""Keys, CSRs and certificate facts: the small x509 vocabulary the core needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from certman.errors import ValidationError
from certman.models import KeyType

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_CURVES = {KeyType.EC_P256: ec.SECP256R1, KeyType.EC_P384: ec.SECP384R1}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}


def generate_private_key(key_type: KeyType) -> PrivateKey:
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])


def key_type_of(key: PublicKeyTypes | PrivateKeyTypes) -> KeyType:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        for key_type, curve in _CURVES.items():
            if isinstance(key.curve, curve):
                return key_type
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        for key_type, bits in _RSA_BITS.items():
            if key.key_size == bits:
                return key_type
    raise ValidationError("The key is of an unsupported type; use EC P-256/P-384 or RSA 2048-4096.")


def private_key_der(key: PrivateKeyTypes) -> bytes:
    """PKCS#8 DER without encryption: only ever handed straight to a key wrapper."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValidationError("The sealed key is of an unsupported type.")
    return key


def signing_hash(key: PrivateKeyTypes | PublicKeyTypes) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP384R1
    ):
        return hashes.SHA384()
    return hashes.SHA256()


def build_csr(key: CertificateIssuerPrivateKeyTypes, identifiers: list[str]) -> bytes:
    """A PKCS#10 request for ``identifiers`` (DNS names and IP addresses) as PEM."""
    import ipaddress

    names: list[x509.GeneralName] = []
    for value in identifiers:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.DNSName(value))
    subject = []
    first_dns = next((v for v in identifiers if not _is_ip(v)), None)
    if first_dns and len(first_dns) <= 64:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, first_dns))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, signing_hash(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class CertificateFacts:
    """What the inventory records of an issued certificate."""

    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    public_key_der: bytes


def certificate_facts(pem: bytes) -> CertificateFacts:
    cert = load_certificate(pem)
    return CertificateFacts(
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key_der=public_key_der(cert.public_key()),
    )


def public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise ValidationError(f"The certificate is not valid PEM: {e}.") from None


def split_pem_chain(pem: bytes) -> list[bytes]:
    """Each certificate of a PEM bundle, in order, as its own PEM."""
    return (
        [c.public_bytes(serialization.Encoding.PEM) for c in x509.load_pem_x509_certificates(pem)]
        if pem.strip()
        else []
    )
