"""The key wrapper contract, run over every backend (local, aws-kms on moto, pkcs11 on
SoftHSM2): what the lifecycle relies on when it seals a private key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from certman.contracts import supports
from certman.contracts.key_wrapper import SupportsRewrap
from certman.errors import KeyWrapError
from certman.keywrap import ALGORITHM, rewrap
from certman.keywrap.dispatch import sealing_wrapper
from certman.models import EncryptionContext, WrappedKey
from tests.conformance.conftest import KeyWrapperBackend

CONTEXT = EncryptionContext(certificate="www.example.test", revision=3, purpose="private-key")
SECRET = b"-----not a real key, but secret bytes-----"


def test_a_wrapped_secret_unwraps_to_itself_also_after_a_json_round_trip(
    key_wrapper_backend: KeyWrapperBackend,
) -> None:
    wrapper = key_wrapper_backend.runtime.key_wrapper
    sealed = wrapper.wrap(SECRET, CONTEXT)
    assert SECRET not in sealed.to_json().encode()
    assert wrapper.unwrap(sealed, CONTEXT) == SECRET
    assert wrapper.unwrap(WrappedKey.from_json(sealed.to_json()), CONTEXT) == SECRET


def test_the_record_names_wrapper_type_key_and_format_version(
    key_wrapper_backend: KeyWrapperBackend,
) -> None:
    wrapper = key_wrapper_backend.runtime.key_wrapper
    sealed = wrapper.wrap(SECRET, CONTEXT)
    assert sealed.wrapper == wrapper.wrapper_type == key_wrapper_backend.type_name
    assert sealed.key_id == key_wrapper_backend.key_id
    assert sealed.algorithm == ALGORITHM
    assert sealed.version == 1
    assert len(sealed.nonce) == 12


def test_each_wrap_gets_its_own_data_key_and_nonce(key_wrapper_backend: KeyWrapperBackend) -> None:
    wrapper = key_wrapper_backend.runtime.key_wrapper
    one, two = wrapper.wrap(SECRET, CONTEXT), wrapper.wrap(SECRET, CONTEXT)
    assert one.encrypted_data_key != two.encrypted_data_key
    assert one.nonce != two.nonce
    assert one.ciphertext != two.ciphertext


@pytest.mark.parametrize(
    "other",
    [
        replace(CONTEXT, certificate="api.example.test"),
        replace(CONTEXT, revision=4),
        replace(CONTEXT, purpose="archive"),
    ],
    ids=["certificate", "revision", "purpose"],
)
def test_unwrapping_under_another_context_is_refused(
    key_wrapper_backend: KeyWrapperBackend, other: EncryptionContext
) -> None:
    wrapper = key_wrapper_backend.runtime.key_wrapper
    sealed = wrapper.wrap(SECRET, CONTEXT)
    with pytest.raises(KeyWrapError, match="sealed for another certificate, revision or purpose"):
        wrapper.unwrap(sealed, other)


@pytest.mark.parametrize("field_name", ["encrypted_data_key", "nonce", "ciphertext"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_flipped_byte_anywhere_is_refused(
    key_wrapper_backend: KeyWrapperBackend, field_name: str, where: str
) -> None:
    wrapper = key_wrapper_backend.runtime.key_wrapper
    sealed = wrapper.wrap(SECRET, CONTEXT)
    value: bytes = getattr(sealed, field_name)
    index = 0 if where == "first" else len(value) - 1
    flipped = value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1 :]
    with pytest.raises(KeyWrapError):
        wrapper.unwrap(replace(sealed, **{field_name: flipped}), CONTEXT)


def test_a_record_of_an_older_key_is_opened_and_rewrapped_to_the_newer_one(
    key_wrapper_backend: KeyWrapperBackend,
) -> None:
    key_wrapper_backend.skip_unless("rewrap")
    wrapper = key_wrapper_backend.runtime.key_wrapper
    if not supports(sealing_wrapper(wrapper), SupportsRewrap):
        pytest.skip(f"{key_wrapper_backend.type_name} does not implement SupportsRewrap")
    assert key_wrapper_backend.next_key is not None
    sealed = wrapper.wrap(SECRET, CONTEXT)
    assert not wrapper.needs_rewrap(sealed)  # type: ignore[attr-defined]

    newer = key_wrapper_backend.next_key()
    try:
        moved = newer.key_wrapper
        assert moved.needs_rewrap(sealed)  # type: ignore[attr-defined]
        assert moved.unwrap(sealed, CONTEXT) == SECRET, "the older record stays readable"
        rewrapped = rewrap(moved, moved, sealed, CONTEXT)
        assert not moved.needs_rewrap(rewrapped)  # type: ignore[attr-defined]
        assert rewrapped.key_id != sealed.key_id
        assert moved.unwrap(rewrapped, CONTEXT) == SECRET
    finally:
        newer.engine.dispose() if "engine" in newer.__dict__ else None
