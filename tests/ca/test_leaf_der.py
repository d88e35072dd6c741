"""The leaf DER encoder signs exactly what cryptography's builder signs, or is not used."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from certman.ca import CAHierarchy, PrivateCA, SigningPolicy, create_hierarchy, generate_private_key
from certman.ca.leaf_der import LeafEncoder, subject_key_bits, tlv
from certman.ca.profiles import LeafProfile
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certman.domains import Identifier
from certman.models import KeyType
from tests.ca.conftest import CONSTRAINED_POLICY, NOW

ISSUER_KEYS = (KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048)
LEAF_KEYS = {kt: generate_private_key(kt).public_key() for kt in (*ISSUER_KEYS, KeyType.RSA_3072)}
NAME_SETS = (
    ("www.example.com",),
    ("*.example.com", "example.com"),
    ("192.0.2.10",),  # no DNS name: empty subject, critical SAN
    ("2001:db8::1", "ip6.example.com"),
    (f"{'a' * 60}.example.com",),  # longer than a common name may be: empty subject
    tuple(f"host{i}.example.com" for i in range(40)),  # lengths past 127 and 255 bytes
)
SERIALS = (1, 0x7F, 0x80, (1 << 158) | 0xFF, (1 << 64) + 5)
VALIDITIES = (
    (datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC), datetime(2026, 5, 30, 11, 0, 0, tzinfo=UTC)),
    # from 2050 on, a GeneralizedTime (RFC 5280 4.1.2.5)
    (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC)),
)


def identifiers(names: tuple[str, ...]) -> tuple[Identifier, ...]:
    return tuple(Identifier(value=n, is_ip=n[0].isdigit() or ":" in n) for n in names)


def profile_for(key_type: KeyType, policy: SigningPolicy) -> LeafProfile:
    hierarchy = create_hierarchy(
        name="t", common_name="Encoder Test", key_type=key_type, policy=policy, now=NOW
    )
    return LeafProfile(
        issuer_certificate=hierarchy.intermediate_certificate,
        issuer_key=hierarchy.intermediate_key,
        policy=policy,
    )


@pytest.mark.parametrize("policy", [SigningPolicy(), CONSTRAINED_POLICY], ids=["plain", "crl+eku"])
@pytest.mark.parametrize("issuer_type", ISSUER_KEYS, ids=lambda k: k.value)
def test_the_encoder_writes_the_builders_certificate_byte_for_byte(
    issuer_type: KeyType, policy: SigningPolicy
) -> None:
    profile = profile_for(issuer_type, policy)
    encoder = profile._encoder
    assert encoder is not None, "the probe leaf should have agreed"
    cases = itertools.product(LEAF_KEYS.items(), NAME_SETS, SERIALS[:3], VALIDITIES)
    for (leaf_type, public_key), names, serial, (not_before, not_after) in cases:
        ids = identifiers(names)
        # as the profile chooses it: the first DNS name, if short enough (BR 7.1.2.7.2)
        first_dns = next((i.value for i in ids if not i.is_ip), None)
        common_name = first_dns if first_dns and len(first_dns) <= 64 else None
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fields = {
            "identifiers": ids,
            "common_name": common_name,
            "serial": serial,
            "not_before": not_before,
            "not_after": not_after,
        }
        built = profile._build(public_key=public_key, **fields)  # type: ignore[arg-type]
        encoded = encoder.sign(
            spki_der=spki,
            rsa_key=leaf_type.value.startswith("rsa"),
            **fields,  # type: ignore[arg-type]
        )
        # RFC 6979 ECDSA and PKCS#1 v1.5 are deterministic: the whole certificate is equal.
        assert encoded == built.public_bytes(serialization.Encoding.DER), (leaf_type, names)


def test_serials_of_every_length_encode_as_the_builder_does() -> None:
    profile = profile_for(KeyType.EC_P256, SigningPolicy())
    assert profile._encoder is not None
    public_key = LEAF_KEYS[KeyType.EC_P256]
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    not_before, not_after = VALIDITIES[0]
    for serial in SERIALS:
        fields = {
            "identifiers": identifiers(("www.example.com",)),
            "common_name": "www.example.com",
            "serial": serial,
            "not_before": not_before,
            "not_after": not_after,
        }
        built = profile._build(public_key=public_key, **fields)  # type: ignore[arg-type]
        encoded = profile._encoder.sign(spki_der=spki, rsa_key=False, **fields)  # type: ignore[arg-type]
        assert encoded == built.public_bytes(serialization.Encoding.DER)
        assert x509.load_der_x509_certificate(encoded).serial_number == serial


def test_the_key_identifier_hashes_the_subject_public_key_bits() -> None:
    for public_key in LEAF_KEYS.values():
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        expected = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
        assert hashlib.sha1(subject_key_bits(spki)).digest() == expected


def test_an_encoder_that_disagrees_with_the_builder_is_not_used(
    hierarchy: CAHierarchy, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_sign = LeafEncoder.sign

    def off_by_one_serial(self: LeafEncoder, **fields: object) -> bytes:
        fields["serial"] = int(fields["serial"]) + 1  # type: ignore[call-overload]
        return honest_sign(self, **fields)  # type: ignore[arg-type]

    monkeypatch.setattr(LeafEncoder, "sign", off_by_one_serial)
    authority = PrivateCA.from_hierarchy(hierarchy, SigningPolicy())
    assert authority._profile._encoder is None
    # The builder signs instead: the planned serial is the one in the certificate.
    leaf = authority._profile.sign_leaf(
        public_key=LEAF_KEYS[KeyType.EC_P256],
        key_type=KeyType.EC_P256,
        identifiers=identifiers(("www.example.com",)),
        now=NOW + timedelta(days=1),
        validity=timedelta(days=30),
        serial=12345,
    )
    certificate = x509.load_der_x509_certificate(leaf.der)
    assert certificate.serial_number == leaf.serial == 12345
    certificate.verify_directly_issued_by(hierarchy.intermediate_certificate)


def test_the_facts_of_a_signed_leaf_are_those_of_its_certificate(authority: PrivateCA) -> None:
    leaf = authority._profile.sign_leaf(
        public_key=LEAF_KEYS[KeyType.RSA_2048],
        key_type=KeyType.RSA_2048,
        identifiers=identifiers(("api.example.com", "192.0.2.1")),
        now=NOW + timedelta(days=1, microseconds=654321),
        validity=timedelta(days=30, microseconds=1),
    )
    certificate = x509.load_der_x509_certificate(leaf.der)
    assert certificate.serial_number == leaf.serial
    assert certificate.not_valid_before_utc == leaf.not_before
    assert certificate.not_valid_after_utc == leaf.not_after
    assert (
        certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == leaf.public_key_der
    )


@pytest.mark.parametrize("size", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x123456])
def test_element_lengths_are_definite_and_minimal(size: int) -> None:
    """X.690 8.1.3: short form below 128, else the fewest length octets."""
    element = tlv(0x04, b"\x00" * size)
    if size < 0x80:
        assert element[:2] == bytes((0x04, size))
    else:
        octets = (size.bit_length() + 7) // 8
        assert element[1] == 0x80 | octets
        assert int.from_bytes(element[2 : 2 + octets], "big") == size
    assert len(element) - size == (2 if size < 0x80 else 2 + (size.bit_length() + 7) // 8)
