"""Archive bundles: encrypted whole, bound to their certificate and revision."""

from __future__ import annotations

import json

import pytest

from certman.archive import open_bundle, read_header, rewrap_bundle, seal_bundle
from certman.errors import IntegrityError, KeyWrapError
from certman.keywrap import LocalMasterKey
from certman.models import EncryptionContext


def _seal(master_key, issued, *, name="www", revision=1) -> bytes:
    return seal_bundle(
        master_key,
        name=name,
        revision=revision,
        certificate_pem=issued.certificate_pem,
        chain_pem=issued.chain_pem,
        sealed_key=issued.sealed_key,
        metadata={"serial": str(issued.serial), "not_after": "2025-04-01T00:00:00+00:00"},
    )


def test_bundle_round_trip_gives_every_field_back(master_key, issued):
    bundle = open_bundle(master_key, _seal(master_key, issued), name="www", revision=1)
    assert bundle.name == "www"
    assert bundle.revision == 1
    assert bundle.certificate_pem == issued.certificate_pem
    assert bundle.chain_pem == issued.chain_pem
    assert bundle.sealed_key == issued.sealed_key
    assert bundle.metadata["serial"] == str(issued.serial)


def test_sealed_key_inside_a_bundle_still_unseals(master_key, issued):
    bundle = open_bundle(master_key, _seal(master_key, issued), name="www", revision=1)
    context = EncryptionContext(certificate="www", revision=1, purpose="private-key")
    assert b"PRIVATE KEY" in master_key.unwrap(bundle.sealed_key, context)


def test_bundle_bytes_reveal_neither_certificate_nor_sealed_key(master_key, issued):
    body = _seal(master_key, issued)
    assert b"BEGIN" not in body
    assert issued.certificate_der not in body
    assert issued.certificate_der[-64:] not in body  # the signature, in any framing
    assert issued.sealed_key.to_json().encode() not in body
    assert issued.sealed_key.encrypted_data_key not in body
    assert issued.sealed_key.ciphertext not in body
    assert str(issued.serial).encode() not in body


def test_bundle_header_is_one_json_line_that_says_what_it_is(master_key, issued):
    body = _seal(master_key, issued)
    header = json.loads(body.split(b"\n", 1)[0])
    assert header["format"] == "certman-bundle"
    assert (header["name"], header["revision"]) == ("www", 1)
    assert header["sealed"]["wrapper"] == "local"
    assert read_header(body, name="www", revision=1).sealed.key_id == "local:v1"


@pytest.mark.parametrize("where", [-1, -20, -40])
def test_tampered_bundle_is_an_integrity_error(master_key, issued, where):
    body = bytearray(_seal(master_key, issued))
    body[where] ^= 0x01
    with pytest.raises(IntegrityError, match="'www' revision 1"):
        open_bundle(master_key, bytes(body), name="www", revision=1)


@pytest.mark.parametrize("body", [b"", b"garbage", b"{}\n", b'{"format":"x","v":1}\nabc'])
def test_malformed_bundle_is_an_integrity_error(master_key, body):
    with pytest.raises(IntegrityError, match="is malformed"):
        open_bundle(master_key, body, name="www", revision=1)


def test_truncated_bundle_is_an_integrity_error(master_key, issued):
    body = _seal(master_key, issued)
    with pytest.raises(IntegrityError):
        open_bundle(master_key, body[:-10], name="www", revision=1)
    with pytest.raises(IntegrityError, match="truncated"):
        open_bundle(master_key, body.split(b"\n", 1)[0], name="www", revision=1)


@pytest.mark.parametrize(("name", "revision"), [("api", 1), ("www", 2)])
def test_bundle_opened_as_another_revision_fails(master_key, issued, name, revision):
    body = _seal(master_key, issued)
    with pytest.raises(IntegrityError):
        open_bundle(master_key, body, name=name, revision=revision)


def test_bundle_relabelled_as_another_revision_fails(master_key, issued):
    head, _, ciphertext = _seal(master_key, issued).partition(b"\n")
    header = json.loads(head)
    header["revision"] = 2
    relabelled = json.dumps(header).encode() + b"\n" + ciphertext
    with pytest.raises(IntegrityError, match="sealed for another certificate, revision"):
        open_bundle(master_key, relabelled, name="www", revision=2)


def test_bundle_under_another_master_key_fails(master_key, issued, tmp_path):
    other = LocalMasterKey.create(tmp_path / "other.json")
    with pytest.raises(IntegrityError, match="master key does not match"):
        open_bundle(other, _seal(master_key, issued), name="www", revision=1)


def test_retryable_wrapper_failure_passes_through(master_key, issued):
    class Unreachable:
        wrapper_type = "local"

        def wrap(self, plaintext, context):
            raise AssertionError("not called")

        def unwrap(self, wrapped, context):
            raise KeyWrapError("KMS is unreachable; try again later.", retryable=True)

    with pytest.raises(KeyWrapError, match="unreachable"):
        open_bundle(Unreachable(), _seal(master_key, issued), name="www", revision=1)


def test_rewrap_bundle_after_rotation_opens_under_the_new_version(master_key, issued):
    body = _seal(master_key, issued)
    master_key.rotate()
    assert master_key.needs_rewrap(read_header(body, name="www", revision=1).sealed)
    renewed = rewrap_bundle(master_key, master_key, body, name="www", revision=1)
    assert not master_key.needs_rewrap(read_header(renewed, name="www", revision=1).sealed)
    bundle = open_bundle(master_key, renewed, name="www", revision=1)
    assert bundle.certificate_pem == issued.certificate_pem


def test_rewrap_bundle_to_another_wrapper_can_move_the_sealed_key_too(master_key, issued, tmp_path):
    other = LocalMasterKey.create(tmp_path / "other.json")
    context = EncryptionContext(certificate="www", revision=1, purpose="private-key")
    body = _seal(master_key, issued)
    moved = rewrap_bundle(
        master_key, other, body, name="www", revision=1, sealed_key_context=context
    )
    bundle = open_bundle(other, moved, name="www", revision=1)
    assert b"PRIVATE KEY" in other.unwrap(bundle.sealed_key, context)
    with pytest.raises(IntegrityError):
        open_bundle(master_key, moved, name="www", revision=1)


def test_metadata_must_be_text(master_key, issued):
    with pytest.raises(TypeError, match="metadata"):
        seal_bundle(
            master_key,
            name="www",
            revision=1,
            certificate_pem=issued.certificate_pem,
            chain_pem=issued.chain_pem,
            sealed_key=issued.sealed_key,
            metadata={"serial": 5},  # type: ignore[dict-item]
        )
