"""Key generation, key type detection, PKCS#8 round trips and signature digests."""

from __future__ import annotations

import pytest
from certman.ca.keys import (
    generate_private_key,
    key_type_of,
    load_private_key_der,
    private_key_to_der,
    signature_hash_for,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certman.errors import ValidationError
from certman.models import KeyType


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.EC_P384])
def test_generated_ec_key_has_the_requested_key_type(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    assert key_type_of(key) is key_type
    assert key_type_of(key.public_key()) is key_type


def test_generated_rsa_key_is_2048_bits_with_exponent_65537() -> None:
    key = generate_private_key(KeyType.RSA_2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key_type_of(key) is KeyType.RSA_2048
    assert key.public_key().public_numbers().e == 65537


def test_key_type_of_refuses_unsupported_curve() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(ValidationError, match="secp521r1"):
        key_type_of(key)


def test_key_type_of_refuses_ed25519() -> None:
    with pytest.raises(ValidationError, match="Ed25519"):
        key_type_of(ed25519.Ed25519PrivateKey.generate())


def test_private_key_der_round_trips_as_pkcs8() -> None:
    key = generate_private_key(KeyType.EC_P256)
    der = private_key_to_der(key)
    assert der[:1] == b"\x30"  # a DER SEQUENCE, not PEM
    loaded = load_private_key_der(der)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_load_private_key_der_refuses_garbage() -> None:
    with pytest.raises(ValidationError, match="PKCS#8"):
        load_private_key_der(b"not a key")


@pytest.mark.parametrize(
    ("key_type", "digest"),
    [(KeyType.EC_P256, hashes.SHA256), (KeyType.EC_P384, hashes.SHA384)],
)
def test_signature_hash_matches_the_key_strength(key_type: KeyType, digest: type) -> None:
    assert isinstance(signature_hash_for(generate_private_key(key_type)), digest)
