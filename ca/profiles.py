"""The TLS server leaf profile (CA/Browser Forum Baseline Requirements 7.1.2.7)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from certman.ca.certificates import authority_key_identifier_for
from certman.ca.hierarchy import BACKDATE, MAX_COMMON_NAME
from certman.ca.keys import PrivateKey, PublicKey, key_type_of, signature_hash_for
from certman.ca.leaf_der import LeafEncoder, extension_der
from certman.ca.policy import SigningPolicy
from certman.ca.serials import SERIAL_BITS, new_serial
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from certman import pki
from certman.clock import utc
from certman.domains import Identifier
from certman.errors import PolicyError, ValidationError
from certman.models import KeyType

_EMPTY_NAME = x509.Name([])


@dataclass(frozen=True)
class SignedLeaf:
    """A signed leaf as DER, with the fields the CA chose for it."""

    der: bytes
    serial: int
    not_before: datetime
    not_after: datetime
    public_key_der: bytes


class LeafProfile:
    """Signs TLS server leaves under one issuing certificate.

    Everything that does not depend on the request (issuer name, AKI, EKU, key usage,
    basic constraints, CRL distribution point, digest) is built once here, so a leaf
    costs one CSR signature check, one SKI hash and one signature. Leaves are written by
    ca.leaf_der's encoder when it reproduces the builder's leaf (checked here, once),
    otherwise by cryptography's builder.
    """

    def __init__(
        self,
        *,
        issuer_certificate: x509.Certificate,
        issuer_key: PrivateKey,
        policy: SigningPolicy,
    ) -> None:
        self._issuer_name = issuer_certificate.subject
        self._issuer_key = issuer_key
        self._hash = signature_hash_for(issuer_key)
        self.not_after_limit = issuer_certificate.not_valid_after_utc
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if policy.client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        static = [
            x509.Extension(ExtensionOID.EXTENDED_KEY_USAGE, False, x509.ExtendedKeyUsage(usages)),
            x509.Extension(
                ExtensionOID.BASIC_CONSTRAINTS,
                True,
                x509.BasicConstraints(ca=False, path_length=None),
            ),
            x509.Extension(
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                False,
                authority_key_identifier_for(issuer_certificate),
            ),
        ]
        if policy.crl_url:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(policy.crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            static.append(
                x509.Extension(
                    ExtensionOID.CRL_DISTRIBUTION_POINTS,
                    False,
                    x509.CRLDistributionPoints([point]),
                )
            )
        self._static_extensions = [_encoded(e) for e in static]
        # BR 7.1.2.7.11: digitalSignature always; keyEncipherment only for RSA (TLS 1.2 RSA kx).
        usage = {
            rsa_key: x509.Extension(ExtensionOID.KEY_USAGE, True, _key_usage(rsa=rsa_key))
            for rsa_key in (False, True)
        }
        self._key_usage = {rsa_key: _encoded(e) for rsa_key, e in usage.items()}
        self._issuer_certificate = issuer_certificate
        self._encoder: LeafEncoder | None = None
        if LeafEncoder.supports(issuer_key, self._hash):
            encoder = LeafEncoder(
                issuer_key=issuer_key,
                issuer_name=self._issuer_name,
                signature_hash=self._hash,
                key_usage={rsa_key: extension_der(e) for rsa_key, e in usage.items()},
                static_extensions=[extension_der(e) for e in static],
            )
            self._encoder = encoder if self._encoder_agrees(encoder) else None

    def check_not_after(self, now: datetime, validity: timedelta) -> datetime:
        """The leaf's not_after; PolicyError when it would outlive the issuer."""
        return self._not_after(utc(now).replace(microsecond=0), validity)

    def plan(self, now: datetime, validity: timedelta) -> tuple[int, datetime, datetime]:
        """(serial, not_before, not_after) of a leaf issued ``now``, as sign_* would choose."""
        start = utc(now).replace(microsecond=0)
        return new_serial(), start - BACKDATE, self._not_after(start, validity)

    def _not_after(self, now: datetime, validity: timedelta) -> datetime:
        not_after = now + validity
        if not_after > self.not_after_limit:
            raise PolicyError(
                f"validity would end the certificate on {not_after:%Y-%m-%d %H:%M:%S}Z, after "
                f"its issuing CA expires ({self.not_after_limit:%Y-%m-%d %H:%M:%S}Z); ask for a "
                "shorter validity or rotate the CA."
            )
        return not_after

    def sign(
        self,
        *,
        csr: x509.CertificateSigningRequest,
        key_type: KeyType,
        identifiers: Sequence[Identifier],
        now: datetime,
        validity: timedelta,
        serial: int | None = None,
        not_before: datetime | None = None,
    ) -> SignedLeaf:
        """Certify the ``key_type`` key of ``csr`` for ``identifiers`` (checked by the policy).

        Only the CSR's public key is used: names come from ``identifiers``, never from the
        CSR subject or its extensions (BR 7.1.2.7.2: the CA, not the applicant, decides).
        """
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValidationError(
                "The CSR's key is not an EC or RSA key; send a CSR made with the sealed key."
            )
        self._check_key_type(public_key, key_type, "The CSR's key")
        assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)  # checked above
        # RFC 2986 section 3: the signature proves possession of the private key.
        if not csr.is_signature_valid:
            raise ValidationError(
                "The CSR signature does not verify; the CSR was altered or signed with "
                "another key. Create a new CSR."
            )
        return self.sign_leaf(
            public_key=public_key,
            key_type=key_type,
            identifiers=identifiers,
            now=now,
            validity=validity,
            serial=serial,
            not_before=not_before,
        )

    @staticmethod
    def _check_key_type(public_key: object, key_type: KeyType, what: str) -> None:
        found = key_type_of(public_key)
        if found != key_type:
            raise ValidationError(
                f"{what} is {found.value} but key_type is {KeyType(key_type).value}; "
                "send a CSR made with the sealed key."
            )

    def sign_leaf(
        self,
        *,
        public_key: PublicKey,
        key_type: KeyType,
        identifiers: Sequence[Identifier],
        now: datetime,
        validity: timedelta,
        serial: int | None = None,
        not_before: datetime | None = None,
        public_key_der: bytes | None = None,
    ) -> SignedLeaf:
        """Certify ``public_key`` (possession established by the caller) for ``identifiers``.

        ``serial`` and ``not_before`` (from ``plan``) make the certificate a function of
        its inputs: signed again, it comes out byte for byte the same (RSA PKCS#1 v1.5 is
        deterministic; ECDSA signs with RFC 6979 nonces), so a resumed issuance reproduces
        the certificate a crash may have left unrecorded instead of making a second one.
        ``public_key_der`` is ``public_key``'s SubjectPublicKeyInfo, when the caller has it
        (it is written into the leaf as it is).
        """
        if not identifiers:
            raise ValidationError("identifiers is empty; give at least one name to certify.")
        self._check_key_type(public_key, key_type, "The key")
        now = utc(now).replace(microsecond=0)
        start = now if not_before is None else self._planned_start(now, not_before)
        not_after = self._not_after(start, validity).replace(microsecond=0)
        if not_after <= now:
            raise PolicyError(
                f"the planned validity ended on {not_after:%Y-%m-%d %H:%M:%S}Z, before it was "
                "signed; renew the certificate to plan a new one."
            )
        # BR 7.1.2.7.2: the common name, if present, repeats one SAN entry.
        first_dns = next((i.value for i in identifiers if not i.is_ip), None)
        common_name = (
            first_dns if first_dns is not None and len(first_dns) <= MAX_COMMON_NAME else None
        )
        serial = new_serial() if serial is None else _check_serial(serial)
        if self._encoder is not None:
            spki = public_key_der or pki.public_key_der(public_key)
            der = self._encoder.sign(
                spki_der=spki,
                rsa_key=isinstance(public_key, rsa.RSAPublicKey),
                identifiers=identifiers,
                common_name=common_name,
                serial=serial,
                not_before=start - BACKDATE,
                not_after=not_after,
            )
        else:
            spki = pki.public_key_der(public_key)  # what the builder writes into the leaf
            der = self._build(
                public_key=public_key,
                identifiers=identifiers,
                common_name=common_name,
                serial=serial,
                not_before=start - BACKDATE,
                not_after=not_after,
            ).public_bytes(serialization.Encoding.DER)
        return SignedLeaf(
            der=der,
            serial=serial,
            not_before=start - BACKDATE,
            not_after=not_after,
            public_key_der=spki,
        )

    def _build(
        self,
        *,
        public_key: PublicKey,
        identifiers: Sequence[Identifier],
        common_name: str | None,
        serial: int,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        """The leaf as cryptography's builder makes it (what the encoder must reproduce)."""
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(i.value)) if i.is_ip else x509.DNSName(i.value)
            for i in identifiers
        ]
        subject = (
            _EMPTY_NAME
            if common_name is None
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        )
        extensions = [
            # RFC 5280 4.2.1.6: the SAN is critical when the subject is empty.
            x509.Extension(
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                subject is _EMPTY_NAME,
                x509.SubjectAlternativeName(names),
            ),
            self._key_usage[isinstance(public_key, rsa.RSAPublicKey)],
            x509.Extension(
                ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                False,
                x509.SubjectKeyIdentifier.from_public_key(public_key),
            ),
            *self._static_extensions,
        ]
        # One builder from the constructor: the chained setters copy it at every step.
        builder = x509.CertificateBuilder(
            issuer_name=self._issuer_name,
            subject_name=subject,
            public_key=public_key,
            serial_number=serial,
            not_valid_before=not_before,
            not_valid_after=not_after,
            extensions=extensions,
        )
        deterministic = True if isinstance(self._issuer_key, ec.EllipticCurvePrivateKey) else None
        return builder.sign(self._issuer_key, self._hash, ecdsa_deterministic=deterministic)

    def _encoder_agrees(self, encoder: LeafEncoder) -> bool:
        """Whether ``encoder`` signs what the builder would: a probe leaf made both ways
        (the issuer's own public key certified for a name and an address) must have the same
        to-be-signed bytes, and the encoder's signature must verify under the issuer."""
        public_key = self._issuer_key.public_key()
        identifiers = (
            Identifier(value="probe.invalid", is_ip=False),
            Identifier(value="192.0.2.1", is_ip=True),
        )
        serial = (1 << 158) | 0x2A
        not_before = self._issuer_certificate.not_valid_before_utc.replace(microsecond=0)
        not_after = self.not_after_limit.replace(microsecond=0)
        built = self._build(
            public_key=public_key,
            identifiers=identifiers,
            common_name="probe.invalid",
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )
        try:
            encoded = x509.load_der_x509_certificate(
                encoder.sign(
                    spki_der=pki.public_key_der(public_key),
                    rsa_key=isinstance(public_key, rsa.RSAPublicKey),
                    identifiers=identifiers,
                    common_name="probe.invalid",
                    serial=serial,
                    not_before=not_before,
                    not_after=not_after,
                )
            )
            encoded.verify_directly_issued_by(self._issuer_certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return encoded.tbs_certificate_bytes == built.tbs_certificate_bytes

    @staticmethod
    def _planned_start(now: datetime, not_before: datetime) -> datetime:
        """The issuance time a plan was made at; a plan from the future is refused."""
        start = utc(not_before).replace(microsecond=0) + BACKDATE
        # Up to BACKDATE of clock skew between the instance that planned and this one.
        if start > now + BACKDATE:
            raise ValidationError(
                f"not_before {not_before:%Y-%m-%d %H:%M:%S}Z is in the future; a plan is made "
                "at issuance time, so check the clocks of the instances."
            )
        return start


def _encoded(extension: x509.Extension[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    """The same extension with its value encoded to DER once, here: the builder then copies
    the bytes into each leaf instead of encoding the value again (same DER either way)."""
    value = x509.UnrecognizedExtension(extension.oid, extension.value.public_bytes())
    return x509.Extension(extension.oid, extension.critical, value)


def _check_serial(serial: int) -> int:
    if not isinstance(serial, int) or not 0 < serial < 2**SERIAL_BITS:
        raise ValidationError(
            f"serial must be a positive integer below 2^{SERIAL_BITS} (CA/Browser Forum BR "
            "7.1); take it from the CA's plan."
        )
    return serial


def _key_usage(*, rsa: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
