"""The envelope scheme every key wrapper shares: AES-256-GCM under a fresh data key."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import KeyWrapError
from certman.models import EncryptionContext, WrappedKey

ALGORITHM = "AES-256-GCM"
FORMAT_VERSION = 1
DATA_KEY_SIZE = 32  # bytes: AES-256
NONCE_SIZE = 12  # bytes: the 96-bit nonce NIST SP 800-38D recommends for GCM
TAG_SIZE = 16


def new_data_key() -> bytes:
    """A fresh random 256-bit data key; one per sealed object, never reused."""
    return os.urandom(DATA_KEY_SIZE)


def seal(
    plaintext: bytes,
    context: EncryptionContext,
    *,
    data_key: bytes,
    encrypted_data_key: bytes,
    wrapper: str,
    key_id: str,
    extra: Mapping[str, str] | None = None,
    nonce: bytes | None = None,
) -> WrappedKey:
    """Encrypt ``plaintext`` under ``data_key`` with ``context`` bound as AAD.

    ``encrypted_data_key`` is ``data_key`` as the calling wrapper sealed it (local
    master key, KMS, HSM); it is stored as is, next to the ciphertext. ``nonce``: fresh
    random bytes the caller drew with others in one call (by default drawn here).
    """
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"data_key must be {DATA_KEY_SIZE} bytes for {ALGORITHM}.")
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes for {ALGORITHM}.")
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, context.aad())
    return WrappedKey(
        wrapper=wrapper,
        key_id=key_id,
        algorithm=ALGORITHM,
        encrypted_data_key=encrypted_data_key,
        nonce=nonce,
        ciphertext=ciphertext,
        version=FORMAT_VERSION,
        extra=dict(extra or {}),
    )


def open_sealed(wrapped: WrappedKey, context: EncryptionContext, data_key: bytes) -> bytes:
    """Decrypt what ``seal`` produced; raise KeyWrapError when the context or bytes differ."""
    check_format(wrapped, context)
    if len(data_key) != DATA_KEY_SIZE:
        raise KeyWrapError(
            f"{describe(context)} cannot be unsealed: its data key has the wrong length, "
            "so the sealed record was altered."
        )
    try:
        return AESGCM(data_key).decrypt(wrapped.nonce, wrapped.ciphertext, context.aad())
    except InvalidTag:
        raise not_for_this_context(context) from None


def check_format(wrapped: WrappedKey, context: EncryptionContext) -> None:
    """Refuse records of another format version or algorithm before trying to decrypt."""
    if wrapped.version != FORMAT_VERSION or wrapped.algorithm != ALGORITHM:
        raise KeyWrapError(
            f"{describe(context)} was sealed with format {wrapped.version} / "
            f"{wrapped.algorithm!r}, which this version of certman cannot open; "
            "upgrade certman."
        )
    if len(wrapped.nonce) != NONCE_SIZE or len(wrapped.ciphertext) < TAG_SIZE:
        raise KeyWrapError(
            f"{describe(context)} cannot be unsealed: the sealed record was altered."
        )


def not_for_this_context(context: EncryptionContext) -> KeyWrapError:
    """The error for a failed GCM tag: every wrapper reports it in the same words."""
    return KeyWrapError(
        f"{describe(context)} cannot be unsealed: it was sealed for another certificate, "
        "revision or purpose, or it was altered."
    )


def describe(context: EncryptionContext) -> str:
    """What was sealed, in an operator's words, for error messages.

    ``The sealed private key of 'web' revision 3``; CA and ACME account keys are named by
    their owner (their contexts say ``ca:NAME`` / ``acme:NAME`` revision 0, an internal
    spelling an operator would not recognise).
    """
    owner, _, name = context.certificate.partition(":")
    if name and owner == "ca":
        role = context.purpose.removeprefix("ca-").removesuffix("-key")
        return f"The sealed {role} key of CA {name}"
    if name and owner == "acme":
        return f"The sealed account key of ACME issuer {name}"
    if context.purpose == "audit-key":  # its revision is the first event it keys
        return f"The sealed audit key (events from {context.revision} on)"
    what = context.purpose.replace("-", " ")
    return f"The sealed {what} of {context.certificate!r} revision {context.revision}"


def rewrap(
    wrapper_from: KeyWrapper,
    wrapper_to: KeyWrapper,
    wrapped: WrappedKey,
    context: EncryptionContext,
) -> WrappedKey:
    """Unseal ``wrapped`` with one wrapper and seal it with another, same context.

    For master key rotation and for moving between wrappers (local → KMS). The plaintext
    exists only in this function's memory; it is never written anywhere.
    """
    return wrapper_to.wrap(wrapper_from.unwrap(wrapped, context), context)
