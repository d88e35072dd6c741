"""The leaf profile's certificates encoded straight to DER: the bulk path's signer.

``x509.CertificateBuilder`` turns every Python object of a certificate (names, extensions,
dates) into DER anew for each leaf; for a profile where all but a handful of fields are
the same in every leaf, that is most of the cost of issuing one (measured: 125 us of a
leaf's 145 us beside a 35 us ECDSA signature). ``LeafEncoder`` keeps the fixed parts as
DER bytes (issuer, signature algorithm, extensions the profile adds to every leaf, each
encoded by cryptography itself) and writes the per-leaf fields around them.

It produces exactly what the builder produces: ``LeafProfile`` signs a probe leaf both
ways when it is created and uses this encoder only when the two agree byte for byte
(tests compare them over every field the profile varies), so a change in cryptography's
encoding turns the fast path off instead of changing a certificate.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from datetime import datetime

from certman.ca.keys import PrivateKey
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certman.domains import Identifier

# AlgorithmIdentifier DER of the signatures the profile makes (RFC 5758 3.2, RFC 4055 5):
# ECDSA without parameters, RSA PKCS#1 v1.5 with a NULL.
_SIGNATURE_ALGORITHMS: dict[tuple[str | None, str], bytes] = {
    ("ec", "sha256"): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ec", "sha384"): bytes.fromhex("300a06082a8648ce3d040303"),
    ("rsa", "sha256"): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("rsa", "sha384"): bytes.fromhex("300d06092a864886f70d01010c0500"),
}
_VERSION_3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
_EMPTY_NAME = bytes.fromhex("3000")
_CN_PREFIX = bytes.fromhex("0603550403")  # OID 2.5.4.3, commonName
_SAN_OID = bytes.fromhex("0603551d11")  # 2.5.29.17
_SKI_OID = bytes.fromhex("0603551d0e")  # 2.5.29.14
_CRITICAL = bytes.fromhex("0101ff")
# GeneralName tags (RFC 5280 4.2.1.6, IMPLICIT): dNSName [2] IA5String, iPAddress [7].
_DNS_NAME, _IP_ADDRESS = 0x82, 0x87


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, body: bytes) -> bytes:
    """One DER element: tag, definite length, contents."""
    n = len(body)
    # The lengths a certificate has, written without a call (twenty elements per leaf).
    if n < 0x80:
        return bytes((tag, n)) + body
    if n < 0x100:
        return bytes((tag, 0x81, n)) + body
    if n < 0x10000:
        return bytes((tag, 0x82, n >> 8, n & 0xFF)) + body
    return bytes((tag,)) + _length(n) + body


def _integer(value: int) -> bytes:
    # A positive INTEGER: one more byte than the magnitude needs when its top bit is set.
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(moment: datetime) -> bytes:
    # RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; seconds, Z.
    rest = (moment.month, moment.day, moment.hour, moment.minute, moment.second)
    if moment.year < 2050:
        return tlv(0x17, b"%02d%02d%02d%02d%02d%02dZ" % (moment.year % 100, *rest))
    return tlv(0x18, b"%04d%02d%02d%02d%02d%02dZ" % (moment.year, *rest))


def extension_der(extension: x509.Extension[x509.ExtensionType]) -> bytes:
    """An Extension (RFC 5280 4.1): its OID, ``critical`` only when true (DER omits a
    DEFAULT), the value as cryptography encodes it."""
    oid = _oid(extension.oid.dotted_string)
    flag = _CRITICAL if extension.critical else b""
    return tlv(0x30, oid + flag + tlv(0x04, extension.value.public_bytes()))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def subject_key_bits(spki_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's bits (after its unused-bits octet) in an SPKI: what
    RFC 5280 4.2.1.2 method (1) hashes for the key identifier."""
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, BIT STRING }
    offset = _header_end(spki_der, 0)
    offset = _skip(spki_der, offset)  # the AlgorithmIdentifier
    start = _header_end(spki_der, offset)
    return spki_der[start + 1 : _skip(spki_der, offset)]


def _header_end(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    return offset + 2 + (first & 0x7F if first & 0x80 else 0)


def _skip(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(der[offset + 2 : offset + 2 + count], "big")
        return offset + 2 + count + length
    return offset + 2 + first


class LeafEncoder:
    """Signs leaves for one issuer: ``issuer_key``, the issuer's subject as DER, and the
    extensions every leaf carries after SAN, key usage and SKI (already DER)."""

    def __init__(
        self,
        *,
        issuer_key: PrivateKey,
        issuer_name: x509.Name,
        signature_hash: hashes.HashAlgorithm,
        key_usage: dict[bool, bytes],
        static_extensions: Sequence[bytes],
    ) -> None:
        self._algorithm = _SIGNATURE_ALGORITHMS[(_kind(issuer_key), signature_hash.name)]
        self._signer = _signer(issuer_key, signature_hash)
        self._issuer = issuer_name.public_bytes()
        self._key_usage = key_usage
        self._static = b"".join(static_extensions)

    @staticmethod
    def supports(issuer_key: object, signature_hash: hashes.HashAlgorithm) -> bool:
        kind = _kind(issuer_key)
        return kind is not None and (kind, signature_hash.name) in _SIGNATURE_ALGORITHMS

    def sign(
        self,
        *,
        spki_der: bytes,
        rsa_key: bool,
        identifiers: Sequence[Identifier],
        common_name: str | None,
        serial: int,
        not_before: datetime,
        not_after: datetime,
    ) -> bytes:
        """The DER certificate; ``common_name`` None leaves the subject empty (and the SAN
        critical, RFC 5280 4.2.1.6). Times are UTC, whole seconds."""
        names = b"".join(
            tlv(_IP_ADDRESS, ipaddress.ip_address(i.value).packed)
            if i.is_ip
            else tlv(_DNS_NAME, i.value.encode("ascii"))
            for i in identifiers
        )
        if common_name is None:
            subject, san_flag = _EMPTY_NAME, _CRITICAL
        else:
            attribute = tlv(0x30, _CN_PREFIX + tlv(0x0C, common_name.encode()))
            subject, san_flag = tlv(0x30, tlv(0x31, attribute)), b""
        ski = hashlib.sha1(subject_key_bits(spki_der), usedforsecurity=False).digest()
        extensions = (
            tlv(0x30, _SAN_OID + san_flag + tlv(0x04, tlv(0x30, names)))
            + self._key_usage[rsa_key]
            + tlv(0x30, _SKI_OID + tlv(0x04, tlv(0x04, ski)))
            + self._static
        )
        tbs = tlv(
            0x30,
            _VERSION_3
            + _integer(serial)
            + self._algorithm
            + self._issuer
            + tlv(0x30, _time(not_before) + _time(not_after))
            + subject
            + spki_der
            + tlv(0xA3, tlv(0x30, extensions)),
        )
        signature = self._signer(tbs)
        return tlv(0x30, tbs + self._algorithm + tlv(0x03, b"\x00" + signature))


def _kind(key: object) -> str | None:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _signer(key: PrivateKey, signature_hash: hashes.HashAlgorithm) -> Callable[[bytes], bytes]:
    """``key``'s signature over the to-be-signed bytes, as the builder makes it: RSA PKCS#1
    v1.5, or ECDSA with RFC 6979 nonces (the same certificate each time it is signed)."""
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_padding = padding.PKCS1v15()
        return lambda tbs: key.sign(tbs, rsa_padding, signature_hash)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    algorithm = ec.ECDSA(signature_hash, deterministic_signing=True)
    return lambda tbs: key.sign(tbs, algorithm)
