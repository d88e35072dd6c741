"""CA and leaf key pairs: generation, key type detection, PKCS#8 DER and signature hashes."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certman.errors import ValidationError
from certman.models import KeyType

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
