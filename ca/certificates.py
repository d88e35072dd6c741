"""Certificate encodings the core stores and shows: PEM, SHA-256 fingerprints, hex serials."""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certman.errors import ValidationError


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def der_certificate_to_pem(der: bytes) -> bytes:
    """The PEM of a DER certificate (RFC 7468 section 5: 64-character base64 lines), byte for
    byte what ``public_bytes(PEM)`` writes: for DER already at hand, since every
    ``public_bytes`` call encodes the certificate anew."""
    text = base64.b64encode(der)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def certificates_to_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """Concatenated PEM, in the order given (leaf first for chains)."""
    return b"".join(certificate_to_pem(c) for c in certificates)


def load_certificate_pem(pem: bytes, *, field: str = "certificate") -> x509.Certificate:
    """Load exactly the first PEM certificate in ``pem``; ValidationError names ``field``."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as e:
        raise ValidationError(f"{field} is not a PEM X.509 certificate.") from e


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, lowercase hex without colons."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_hex(certificate: x509.Certificate) -> str:
    """The serial number in lowercase hex without leading zeros."""
    return format(certificate.serial_number, "x")


def authority_key_identifier_for(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ``issuer`` signs: its SKI, else one from its key (RFC 5280 4.2.1.1)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
