"""Certificate revocation lists signed by the issuing intermediate (RFC 5280 section 5)."""

from __future__ import annotations

from datetime import timedelta

from certman.ca.certificates import authority_key_identifier_for
from certman.ca.keys import PrivateKey, signature_hash_for
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certman.clock import utc
from certman.contracts.issuer import CRLRequest, RevokedEntry
from certman.errors import ValidationError
from certman.models import RevocationReason

# RFC 5280 5.2.3: a CRL number is a non-negative integer of at most 20 octets.
_MAX_CRL_NUMBER = 2 ** (8 * 20 - 1) - 1

_REASON_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
}


def sign_crl(
    request: CRLRequest,
    *,
    issuer_certificate: x509.Certificate,
    issuer_key: PrivateKey,
) -> bytes:
    """A PEM CRL listing every entry of ``request``, signed by ``issuer_key``."""
    if not 0 <= request.number <= _MAX_CRL_NUMBER:
        raise ValidationError(
            f"CRL number {request.number} is out of range; it must be between 0 and 2^159 - 1."
        )
    if request.next_update <= timedelta(0):
        raise ValidationError("next_update must be longer than zero.")
    now = utc(request.now).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_certificate.subject)
        .last_update(now)
        .next_update(now + request.next_update)
        .add_extension(x509.CRLNumber(request.number), critical=False)
        .add_extension(authority_key_identifier_for(issuer_certificate), critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(request.entries, key=lambda e: e.serial):
        if entry.serial <= 0:
            raise ValidationError(f"Revoked serial {entry.serial} must be a positive integer.")
        if entry.serial in seen:
            raise ValidationError(
                f"Revoked serial {entry.serial:x} is listed twice; list each serial once."
            )
        seen.add(entry.serial)
        builder = builder.add_revoked_certificate(_revoked(entry))
    crl = builder.sign(issuer_key, signature_hash_for(issuer_key))
    return crl.public_bytes(serialization.Encoding.PEM)


def _revoked(entry: RevokedEntry) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(utc(entry.revoked_at).replace(microsecond=0))
    )
    flag = _REASON_FLAGS.get(RevocationReason(entry.reason))
    # RFC 5280 5.3.1: omit the reasonCode extension rather than use unspecified (0).
    if flag is not None:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()
