"""CA and leaf key pairs: the core's key vocabulary (certman.pki), re-exported for the CA."""

from __future__ import annotations

from certman.pki import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_type_of,
    load_private_key_der,
    private_key_to_der,
    signature_hash_for,
)

__all__ = [
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "key_type_of",
    "load_private_key_der",
    "private_key_to_der",
    "signature_hash_for",
]
