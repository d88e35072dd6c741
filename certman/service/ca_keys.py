"""Where a private CA's keys are: sealed in the inventory, or resident in an HSM.

A CA created with ``key_store = "hsm"`` has its root and intermediate keys generated in the
PKCS#11 token named by [kms] (module, token_label, pin_env), never extractable. The
inventory keeps, in place of each sealed key, a reference record: a ``WrappedKey`` whose
wrapper is ``pkcs11-resident`` and whose key id is the key's RFC 7512 URI. Nothing in it is
secret, and nothing can unseal it: the key signs inside the token.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from certman.errors import KeyWrapError
from certman.models import KeyType, WrappedKey

if TYPE_CHECKING:
    from certman.config import Config
    from certman.inventory.tables import Authority
    from certman.keywrap.pkcs11_token import Pkcs11Token
    from certman.pki import PrivateKey
    from certman.service.runtime import Runtime

RESIDENT = "pkcs11-resident"
ROLES = ("root", "intermediate")


def is_resident(record: str) -> bool:
    """Is this stored CA key a reference to an HSM key (not a sealed one)?"""
    return bool(record) and json.loads(record).get("wrapper") == RESIDENT


def key_store_of(row: Authority) -> str:
    return "hsm" if is_resident(row.intermediate_sealed_key) else "sealed"


def hsm_token(config: Config) -> Pkcs11Token:
    """The token of [kms] (module, token_label, pin_env), whatever [kms] type seals with."""
    from certman.keywrap.pkcs11_token import Pkcs11Token

    return Pkcs11Token.from_settings(config.sections["kms"], str(config.path))


def new_resident_keys(
    runtime: Runtime, ca_name: str, key_type: KeyType
) -> tuple[PrivateKey, PrivateKey]:
    """A root and an intermediate key pair generated in the token for CA ``ca_name``.

    Labels carry a random suffix: a `ca create` that fails after this leaves two unused
    keys behind, never a label a retry would trip over or (worse) reuse.
    """
    from certman.keywrap.pkcs11_keys import generate_signing_key

    token = hsm_token(runtime.config)
    suffix = secrets.token_hex(4)
    root, intermediate = (
        generate_signing_key(token, f"certman-ca-{ca_name}-{role}-{suffix}", key_type)
        for role in ROLES
    )
    return root, intermediate


def reference_record(key: PrivateKey) -> str:
    """What the inventory stores for an HSM-resident key: where it is, nothing else."""
    uri: str = key.uri  # type: ignore[union-attr]
    return WrappedKey(
        wrapper=RESIDENT,
        key_id=uri,
        algorithm="none",
        encrypted_data_key=b"",
        nonce=b"",
        ciphertext=b"",
    ).to_json()


def ca_private_key(runtime: Runtime, row: Authority, role: str) -> PrivateKey:
    """The CA's ``role`` key: unsealed in memory, or the HSM signer for a resident one."""
    from certman.pki import load_private_key_der
    from certman.service.authorities import key_context

    record = WrappedKey.from_json(getattr(row, f"{role}_sealed_key"))
    if record.wrapper != RESIDENT:
        der = runtime.key_wrapper.unwrap(record, key_context(row.name, role))
        return load_private_key_der(der)
    from certman.keywrap.pkcs11 import parse_key_uri
    from certman.keywrap.pkcs11_keys import load_signing_key

    token = hsm_token(runtime.config)
    token_label, key_label = parse_key_uri(record.key_id)
    if token_label != token.token_label:
        raise KeyWrapError(
            f"The {role} key of CA {row.name} is on the PKCS#11 token {token_label!r}, but "
            f"[kms] token_label is {token.token_label!r}; point it at that token."
        )
    return load_signing_key(token, key_label)
