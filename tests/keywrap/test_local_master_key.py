"""The local master key file: private, versioned, never overwritten, never echoed."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from certman.contracts.key_wrapper import KeyWrapper, SupportsRewrap
from certman.errors import AlreadyExistsError, KeyWrapError
from certman.keywrap import LocalMasterKey, rewrap


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _keys_in(path) -> list[str]:
    return [v["key"] for v in json.loads(path.read_text())["versions"]]


def test_local_master_key_implements_the_contracts(master_key):
    assert isinstance(master_key, KeyWrapper)
    assert isinstance(master_key, SupportsRewrap)


def test_master_key_file_is_created_0600_in_a_0700_directory(master_key, master_key_path):
    assert _mode(master_key_path) == 0o600
    assert _mode(master_key_path.parent) == 0o700
    doc = json.loads(master_key_path.read_text())
    assert doc["format"] == 1
    assert [v["status"] for v in doc["versions"]] == ["active"]
    assert len(base64.b64decode(doc["versions"][0]["key"])) == 32


def test_create_refuses_to_overwrite_an_existing_master_key(master_key, master_key_path):
    before = master_key_path.read_bytes()
    with pytest.raises(AlreadyExistsError, match="never overwrites a master key"):
        LocalMasterKey.create(master_key_path)
    assert master_key_path.read_bytes() == before


def test_load_reads_back_the_same_key(master_key, master_key_path, context):
    wrapped = master_key.wrap(b"secret", context)
    loaded = LocalMasterKey.load(master_key_path)
    assert loaded.unwrap(wrapped, context) == b"secret"
    assert loaded.fingerprint() == master_key.fingerprint()


def test_master_key_file_readable_by_others_is_refused(master_key, master_key_path):
    os.chmod(master_key_path, 0o644)
    with pytest.raises(KeyWrapError, match=r"chmod 600") as info:
        LocalMasterKey.load(master_key_path)
    assert "0644" in str(info.value)


def test_missing_master_key_file_says_restore_or_init(tmp_path):
    path = tmp_path / "master-key.json"
    with pytest.raises(KeyWrapError) as info:
        LocalMasterKey.load(path)
    assert str(info.value) == (
        f"The master key file {path} is missing; restore it from your backup (sealed keys "
        "cannot be opened without it), or run `certman init` on a new home."
    )


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"format": 2, "versions": []}',
        b'{"format": 1, "versions": []}',
        b'{"format": 1, "versions": [{"version": 1, "key": "!!", "status": "active"}]}',
    ],
)
def test_malformed_master_key_file_is_named_in_the_error(tmp_path, content):
    path = tmp_path / "master-key.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyWrapError, match="is malformed") as info:
        LocalMasterKey.load(path)
    assert str(path) in str(info.value)


def test_malformed_master_key_file_error_does_not_echo_the_key(master_key_path, master_key):
    doc = json.loads(master_key_path.read_text())
    secret = doc["versions"][0]["key"]
    doc["versions"][0]["status"] = "unknown"
    doc["versions"].append(dict(doc["versions"][0], version=2, key=secret[:-4]))
    master_key_path.write_text(json.dumps(doc))
    with pytest.raises(KeyWrapError) as info:
        LocalMasterKey.load(master_key_path)
    assert secret not in str(info.value)
    assert secret[:-4] not in str(info.value)


def test_wrong_master_key_fails_without_revealing_key_bytes(master_key, tmp_path, context):
    wrapped = master_key.wrap(b"secret", context)
    other_path = tmp_path / "other.json"
    other = LocalMasterKey.create(other_path)
    with pytest.raises(KeyWrapError, match="master key does not match") as info:
        other.unwrap(wrapped, context)
    message = str(info.value)
    for key in _keys_in(master_key.path) + _keys_in(other_path):
        assert key not in message
        assert base64.b64decode(key).hex() not in message
    assert str(other_path) in message


def test_wrong_master_key_without_recorded_fingerprint_still_fails(master_key, tmp_path, context):
    wrapped = master_key.wrap(b"secret", context)
    wrapped = replace(wrapped, extra={})
    other = LocalMasterKey.create(tmp_path / "other.json")
    with pytest.raises(KeyWrapError, match="master key does not match"):
        other.unwrap(wrapped, context)


def test_unknown_master_key_version_fails(master_key, context):
    wrapped = replace(master_key.wrap(b"secret", context), key_id="local:v7")
    with pytest.raises(KeyWrapError, match="version 7"):
        master_key.unwrap(wrapped, context)


def test_malformed_key_id_fails(master_key, context):
    wrapped = replace(master_key.wrap(b"secret", context), key_id="local:vX")
    with pytest.raises(KeyWrapError, match="was altered"):
        master_key.unwrap(wrapped, context)


def test_repr_never_shows_key_bytes(master_key):
    text = repr(master_key) + repr(master_key.versions())
    for key in _keys_in(master_key.path):
        assert key not in text
        assert repr(base64.b64decode(key)) not in text


def test_rotate_wraps_under_the_new_version(master_key, context, clock):
    clock.advance(timedelta(days=90))
    assert master_key.rotate() == 2
    wrapped = master_key.wrap(b"secret", context)
    assert wrapped.key_id == "local:v2"
    assert master_key.unwrap(wrapped, context) == b"secret"
    statuses = [(v.version, v.status) for v in master_key.versions()]
    assert statuses == [(1, "retired"), (2, "active")]
    assert master_key.versions()[1].created_at == clock.now()


def test_rotate_keeps_old_sealed_keys_openable(master_key, master_key_path, context):
    old = master_key.wrap(b"secret", context)
    master_key.rotate()
    assert master_key.unwrap(old, context) == b"secret"
    assert LocalMasterKey.load(master_key_path).unwrap(old, context) == b"secret"


def test_needs_rewrap_is_true_for_old_versions_and_false_after_rewrap(master_key, context):
    old = master_key.wrap(b"secret", context)
    assert not master_key.needs_rewrap(old)
    master_key.rotate()
    assert master_key.needs_rewrap(old)
    renewed = rewrap(master_key, master_key, old, context)
    assert not master_key.needs_rewrap(renewed)
    assert master_key.unwrap(renewed, context) == b"secret"


def test_needs_rewrap_is_true_for_another_wrapper(master_key, context):
    wrapped = replace(master_key.wrap(b"secret", context), wrapper="awskms")
    assert master_key.needs_rewrap(wrapped)


def test_rotate_keeps_the_file_0600_and_changes_the_fingerprint(master_key, master_key_path):
    before = master_key.fingerprint()
    master_key.rotate()
    assert _mode(master_key_path) == 0o600
    assert master_key.fingerprint() != before
    assert LocalMasterKey.load(master_key_path).fingerprint() == master_key.fingerprint()
    assert not list(master_key_path.parent.glob(".*.tmp"))


def test_fingerprint_is_short_and_not_the_key(master_key):
    fingerprint = master_key.fingerprint()
    assert len(fingerprint) == 16
    key = base64.b64decode(_keys_in(master_key.path)[0])
    assert fingerprint not in key.hex()


def test_rotation_by_another_process_is_picked_up_on_unwrap(master_key, master_key_path, context):
    service = LocalMasterKey.load(master_key_path)
    cli = LocalMasterKey.load(master_key_path)
    cli.rotate()
    wrapped = cli.wrap(b"secret", context)
    assert service.unwrap(wrapped, context) == b"secret"


def test_concurrent_rotations_never_lose_a_version(master_key_path, master_key, context):
    holders = [LocalMasterKey.load(master_key_path) for _ in range(4)]
    sealed = []

    def rotate_and_seal(holder):
        holder.rotate()
        sealed.append(holder.wrap(b"secret", context))

    threads = [threading.Thread(target=rotate_and_seal, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = LocalMasterKey.load(master_key_path)
    assert [v.version for v in final.versions()] == [1, 2, 3, 4, 5]
    for wrapped in sealed:
        assert final.unwrap(wrapped, context) == b"secret"


def test_rotate_refuses_when_the_file_was_replaced(master_key, master_key_path, tmp_path):
    master_key_path.unlink()
    LocalMasterKey.create(master_key_path)
    with pytest.raises(KeyWrapError, match="was replaced"):
        master_key.rotate()
