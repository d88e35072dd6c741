"""Keys as JWS signers: the JWK and algorithm of an EC or RSA key (RFC 8555 section 6.2)."""

from __future__ import annotations

from typing import Any

import josepy as jose


def jwk_of(private_key: Any) -> jose.JWK:
    """A josepy JWK for a cryptography EC or RSA private key."""
    return (
        jose.JWKEC(key=private_key)
        if hasattr(private_key, "curve")
        else jose.JWKRSA(key=private_key)
    )


def algorithm_of(key: jose.JWK) -> jose.JWASignature:
    """ES256/ES384/ES512 by curve size for EC keys, RS256 for RSA (RFC 7518 section 3.1)."""
    if isinstance(key, jose.JWKEC):
        size = key.key.curve.key_size
        return {256: jose.ES256, 384: jose.ES384}.get(size, jose.ES512)
    return jose.RS256
