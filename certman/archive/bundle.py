"""Archive bundles: one revision's certificate, chain, sealed key and metadata, encrypted whole."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import IntegrityError, KeyWrapError
from certman.models import EncryptionContext, WrappedKey, canonical_text_map, json_string

BUNDLE_FORMAT = "certman-bundle"
BUNDLE_VERSION = 1
ARCHIVE_PURPOSE = "archive"

# A bundle is one JSON header line, then the encrypted body as raw bytes:
#   {"format":"certman-bundle","v":1,"name":...,"revision":...,"sealed":{WrappedKey, ct ""}}\n
#   <AES-256-GCM ciphertext of the body JSON>
# The header says what the bundle is and how it was sealed (`head -1` shows it); the
# certificate, chain, sealed key and metadata are readable only through the key wrapper.
_SEPARATOR = b"\n"


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """One archived revision, as ``open_bundle`` returns it. ``sealed_key`` stays sealed."""

    name: str
    revision: int
    certificate_pem: bytes
    chain_pem: bytes
    sealed_key: WrappedKey
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BundleHeader:
    """What a bundle says about itself without decrypting anything."""

    name: str
    revision: int
    sealed: WrappedKey  # the encrypted body; ``needs_rewrap`` can be asked about it


def archive_context(name: str, revision: int) -> EncryptionContext:
    """The context a bundle body is sealed under: it cannot be opened as another revision."""
    return EncryptionContext(certificate=name, revision=revision, purpose=ARCHIVE_PURPOSE)


def seal_bundle(
    wrapper: KeyWrapper,
    *,
    name: str,
    revision: int,
    certificate_pem: bytes,
    chain_pem: bytes,
    sealed_key: WrappedKey,
    metadata: Mapping[str, str],
) -> bytes:
    """Encrypt one revision's bundle with ``wrapper`` and return the bytes to archive."""
    bundle = Bundle(
        name=name,
        revision=revision,
        certificate_pem=certificate_pem,
        chain_pem=chain_pem,
        sealed_key=sealed_key,
        metadata=dict(metadata),
    )
    body = _encode_body(bundle)
    return _encode(name, revision, wrapper.wrap(body, archive_context(name, revision)))


def read_header(body: bytes, *, name: str, revision: int) -> BundleHeader:
    """Parse the header; IntegrityError when malformed or labelled as another revision."""
    head, separator, ciphertext = body.partition(_SEPARATOR)
    try:
        doc: Any = json.loads(head)
        known = doc["format"] == BUNDLE_FORMAT and doc["v"] == BUNDLE_VERSION
        sealed = WrappedKey.from_dict(doc["sealed"]) if known else None
        header_name, header_revision = str(doc["name"]), int(doc["revision"])
    except (ValueError, KeyError, TypeError, IntegrityError):
        raise _malformed(name, revision, "unreadable header") from None
    if sealed is None:
        raise _malformed(name, revision, "not a certman bundle of a known format version")
    if not separator:
        raise _malformed(name, revision, "truncated")
    header = BundleHeader(
        name=header_name, revision=header_revision, sealed=replace(sealed, ciphertext=ciphertext)
    )
    if (header.name, header.revision) != (name, revision):
        raise IntegrityError(
            f"Archive bundle for {name!r} revision {revision} holds {header.name!r} revision "
            f"{header.revision} instead; it was misplaced or altered. Restore it from a backup."
        )
    return header


def open_bundle(wrapper: KeyWrapper, body: bytes, *, name: str, revision: int) -> Bundle:
    """Decrypt and parse a bundle; IntegrityError when it is malformed or was altered.

    A retryable KeyWrapError (KMS or HSM unreachable) passes through unchanged: the
    bundle may be intact, and trying again later can help.
    """
    header = read_header(body, name=name, revision=revision)
    plaintext = _unwrap(wrapper, header, name=name, revision=revision)
    return _decode_body(plaintext, name=name, revision=revision)


def rewrap_bundle(
    wrapper_from: KeyWrapper,
    wrapper_to: KeyWrapper,
    body: bytes,
    *,
    name: str,
    revision: int,
    sealed_key_context: EncryptionContext | None = None,
) -> bytes:
    """Re-seal a bundle under ``wrapper_to`` (master key rotation, moving to KMS).

    With ``sealed_key_context`` the private key sealed inside is re-sealed as well, so
    nothing in the bundle depends on ``wrapper_from`` any more. Plaintext stays in memory.
    """
    header = read_header(body, name=name, revision=revision)
    bundle = _decode_body(
        _unwrap(wrapper_from, header, name=name, revision=revision), name=name, revision=revision
    )
    if sealed_key_context is not None:
        plaintext_key = wrapper_from.unwrap(bundle.sealed_key, sealed_key_context)
        bundle = replace(bundle, sealed_key=wrapper_to.wrap(plaintext_key, sealed_key_context))
    sealed = wrapper_to.wrap(_encode_body(bundle), archive_context(name, revision))
    return _encode(name, revision, sealed)


# --- encoding ---------------------------------------------------------------------------


def _encode(name: str, revision: int, sealed: WrappedKey) -> bytes:
    # CANONICAL_JSON of {"format", "name", "revision", "sealed" (without ciphertext), "v"},
    # spelled out in its sorted order (tests compare the two).
    line = (
        f'{{"format":"{BUNDLE_FORMAT}","name":{json_string(name)},"revision":{int(revision)},'
        f'"sealed":{sealed.to_json(ciphertext=False)},"v":{BUNDLE_VERSION}}}'
    )
    return line.encode() + _SEPARATOR + sealed.ciphertext


def _encode_body(bundle: Bundle) -> bytes:
    for key, value in bundle.metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; {key!r} does not.")
    # CANONICAL_JSON of {"certificate_pem", "chain_pem", "metadata", "name", "revision",
    # "sealed_key"}, spelled out in its sorted order around the sealed key's own JSON (the
    # one the inventory stores, already written once); tests compare the two.
    certificate = json_string(_pem_text(bundle.certificate_pem, "certificate_pem"))
    chain = json_string(_pem_text(bundle.chain_pem, "chain_pem"))
    return (
        f'{{"certificate_pem":{certificate},"chain_pem":{chain},'
        f'"metadata":{canonical_text_map(bundle.metadata)},'
        f'"name":{json_string(bundle.name)},"revision":{int(bundle.revision)},'
        f'"sealed_key":{bundle.sealed_key.to_json()}}}'
    ).encode()


def _decode_body(plaintext: bytes, *, name: str, revision: int) -> Bundle:
    try:
        doc: Any = json.loads(plaintext)
        bundle = Bundle(
            name=str(doc["name"]),
            revision=int(doc["revision"]),
            certificate_pem=doc["certificate_pem"].encode("ascii"),
            chain_pem=doc["chain_pem"].encode("ascii"),
            sealed_key=WrappedKey.from_dict(doc["sealed_key"]),
            metadata={str(k): str(v) for k, v in doc["metadata"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError, IntegrityError):
        raise _malformed(name, revision, "unreadable body") from None
    if (bundle.name, bundle.revision) != (name, revision):
        raise _malformed(name, revision, "body names another revision")
    return bundle


def _unwrap(wrapper: KeyWrapper, header: BundleHeader, *, name: str, revision: int) -> bytes:
    try:
        return wrapper.unwrap(header.sealed, archive_context(name, revision))
    except KeyWrapError as e:
        if e.retryable:
            raise
        raise IntegrityError(
            f"Archive bundle for {name!r} revision {revision} cannot be decrypted. {e.message}"
        ) from e


def _pem_text(pem: bytes, field_name: str) -> str:
    try:
        return pem.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{field_name} must be PEM text (ASCII).") from None


def _malformed(name: str, revision: int, what: str) -> IntegrityError:
    return IntegrityError(
        f"Archive bundle for {name!r} revision {revision} is malformed ({what}); restore it "
        "from a backup."
    )
