"""Keys, CSRs and certificate facts: the small x509 vocabulary the core needs."""

from __future__ import annotations

import hashlib
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from certman.domains import is_ip_address
from certman.errors import ValidationError
from certman.models import CertificateFacts, KeyType

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_CURVES: dict[KeyType, type[ec.EllipticCurve]] = {
    KeyType.EC_P256: ec.SECP256R1,
    KeyType.EC_P384: ec.SECP384R1,
}
_RSA_BITS: dict[KeyType, int] = {
    KeyType.RSA_2048: 2048,
    KeyType.RSA_3072: 3072,
    KeyType.RSA_4096: 4096,
}
_CURVE_TYPES = {"secp256r1": KeyType.EC_P256, "secp384r1": KeyType.EC_P384}
_RSA_TYPES = {bits: key_type for key_type, bits in _RSA_BITS.items()}

# CA/Browser Forum BR 6.1.6: the public exponent is odd and >= 3; 65537 is what everyone uses.
_RSA_PUBLIC_EXPONENT = 65537


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """Generate a fresh private key of ``key_type``."""
    key_type = KeyType.parse(key_type) if not isinstance(key_type, KeyType) else key_type
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    return rsa.generate_private_key(
        public_exponent=_RSA_PUBLIC_EXPONENT, key_size=_RSA_BITS[key_type]
    )


def key_type_of(key: object) -> KeyType:
    """The KeyType of a public or private key; ValidationError for any other key."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        found = _CURVE_TYPES.get(key.curve.name)
        if found is not None:
            return found
        detail = f"EC key on curve {key.curve.name}"
    elif isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        found = _RSA_TYPES.get(key.key_size)
        if found is not None:
            return found
        detail = f"RSA key of {key.key_size} bits"
    else:
        detail = f"{type(key).__name__}"
    known = ", ".join(k.value for k in KeyType)
    raise ValidationError(f"Unsupported key ({detail}); use one of: {known}.")


def private_key_to_der(key: PrivateKey) -> bytes:
    """PKCS#8 DER without encryption: callers seal it at once and never store it as is."""
    key_type_of(key)
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_der(der: bytes) -> PrivateKey:
    """Load an unencrypted PKCS#8 DER private key of a supported key type."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as e:
        raise ValidationError(
            "The private key is not unencrypted PKCS#8 DER; it may be damaged or sealed twice."
        ) from e
    key_type_of(key)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def signature_hash_for(key: object) -> hashes.SHA256 | hashes.SHA384:
    """The digest to sign with ``key`` (BR 7.1.3.2: SHA-384 for P-384, SHA-256 otherwise)."""
    if key_type_of(key) is KeyType.EC_P384:
        return hashes.SHA384()
    return hashes.SHA256()


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


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
    first_dns = next((v for v in identifiers if not is_ip_address(v)), None)
    if first_dns and len(first_dns) <= 64:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, first_dns))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, signature_hash_for(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def certificate_facts(pem: bytes) -> CertificateFacts:
    return facts_of(load_certificate(pem))


def facts_of(
    cert: x509.Certificate, *, public_key: PublicKeyTypes | None = None, der: bytes | None = None
) -> CertificateFacts:
    """The facts of a loaded certificate.

    An issuer that just signed ``cert`` passes what it holds: ``public_key``, the key object
    the builder encoded into it, and ``der``, the certificate's encoding; they spare parsing
    the key back out and encoding the certificate once more for its fingerprint.
    """
    fingerprint = (
        hashlib.sha256(der).hexdigest() if der else cert.fingerprint(hashes.SHA256()).hex()
    )
    return CertificateFacts(
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=fingerprint,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key_der=public_key_der(public_key or cert.public_key()),
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
