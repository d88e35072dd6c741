"""certman's private certificate authority: hierarchy, policy, leaf profile, serials and CRLs."""

from __future__ import annotations

from certman.ca.authority import PrivateCA
from certman.ca.certificates import (
    authority_key_identifier_for,
    certificate_to_pem,
    certificates_to_pem,
    fingerprint_sha256,
    load_certificate_pem,
    serial_hex,
)
from certman.ca.crl import sign_crl
from certman.ca.hierarchy import CAHierarchy, create_hierarchy, name_constraints
from certman.ca.keys import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_type_of,
    load_private_key_der,
    private_key_to_der,
    signature_hash_for,
)
from certman.ca.policy import DEFAULT_MAX_VALIDITY, SigningPolicy
from certman.ca.profiles import LeafProfile
from certman.ca.serials import new_serial

__all__ = [
    "DEFAULT_MAX_VALIDITY",
    "CAHierarchy",
    "LeafProfile",
    "PrivateCA",
    "PrivateKey",
    "PublicKey",
    "SigningPolicy",
    "authority_key_identifier_for",
    "certificate_to_pem",
    "certificates_to_pem",
    "create_hierarchy",
    "fingerprint_sha256",
    "generate_private_key",
    "key_type_of",
    "load_certificate_pem",
    "load_private_key_der",
    "name_constraints",
    "new_serial",
    "private_key_to_der",
    "serial_hex",
    "sign_crl",
    "signature_hash_for",
]
