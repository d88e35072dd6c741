"""The envelope scheme: fresh data key, AES-256-GCM, context bound as AAD."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certman.errors import KeyWrapError
from certman.keywrap import LocalMasterKey, open_sealed, rewrap, seal
from certman.models import EncryptionContext


def _private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_sealed_record_holds_no_plaintext(master_key, context):
    pem = _private_key_pem()
    assert b"PRIVATE KEY" not in master_key.wrap(pem, context).to_json().encode()


def test_two_wraps_of_the_same_plaintext_differ(master_key, context):
    first = master_key.wrap(b"secret", context)
    second = master_key.wrap(b"secret", context)
    assert first.encrypted_data_key != second.encrypted_data_key
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    # The data key's nonce (the first 12 bytes of its sealed form) is not the payload's.
    assert first.encrypted_data_key[:12] != first.nonce


def test_seal_refuses_a_nonce_of_the_wrong_size(context):
    with pytest.raises(ValueError, match="nonce"):
        seal(
            b"x",
            context,
            data_key=os.urandom(32),
            encrypted_data_key=b"",
            wrapper="t",
            key_id="t",
            nonce=b"short",
        )


def test_unwrap_refuses_a_record_from_another_wrapper(master_key, context):
    wrapped = replace(master_key.wrap(b"secret", context), wrapper="awskms")
    with pytest.raises(KeyWrapError, match="'awskms' key wrapper"):
        master_key.unwrap(wrapped, context)


def test_unwrap_refuses_an_unknown_algorithm(master_key, context):
    wrapped = replace(master_key.wrap(b"secret", context), algorithm="AES-128-CBC")
    with pytest.raises(KeyWrapError, match="upgrade certman"):
        master_key.unwrap(wrapped, context)


def test_seal_and_open_sealed_round_trip_under_a_given_data_key(context):
    data_key = os.urandom(32)
    wrapped = seal(
        b"secret",
        context,
        data_key=data_key,
        encrypted_data_key=b"edk",
        wrapper="test",
        key_id="test:1",
    )
    assert open_sealed(wrapped, context, data_key) == b"secret"
    with pytest.raises(KeyWrapError):
        open_sealed(wrapped, context, os.urandom(32))


def test_seal_requires_a_256_bit_data_key(context):
    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"x", context, data_key=b"short", encrypted_data_key=b"", wrapper="t", key_id="t")


def test_rewrap_moves_a_sealed_key_to_another_wrapper(master_key, context, tmp_path):
    other = LocalMasterKey.create(tmp_path / "other.json")
    wrapped = master_key.wrap(b"secret", context)
    moved = rewrap(master_key, other, wrapped, context)
    assert other.unwrap(moved, context) == b"secret"
    with pytest.raises(KeyWrapError):
        master_key.unwrap(moved, context)


def test_the_context_is_bound_as_its_canonical_json() -> None:
    # Every record sealed so far was bound to exactly these bytes; they must never change.
    context = EncryptionContext(certificate='wéb"1', revision=3, purpose="private-key")
    assert (
        context.aad() == b'{"certificate":"w\\u00e9b\\"1","purpose":"private-key","revision":"3"}'
    )
    assert context.aad() is context.aad()  # computed once per context


@pytest.mark.parametrize(
    "certificate", ["web", "ca:corp", 'q"uo\\te', "wéb", "日本", "tab\there", "\x00", "\udcff"]
)
def test_the_context_aad_is_canonical_json_for_any_name(certificate: str) -> None:
    import json

    context = EncryptionContext(certificate=certificate, revision=12, purpose="archive")
    expected = json.dumps(context.as_dict(), sort_keys=True, separators=(",", ":")).encode()
    assert context.aad() == expected
