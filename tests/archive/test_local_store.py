"""The local archive store: private files, checked on read, safe names only."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from certman import fileio
from certman.archive import LocalArchiveStore
from certman.contracts.archive import ArchiveGetRequest, ArchivePutRequest, ArchiveRef, ArchiveStore
from certman.errors import ArchiveError, IntegrityError, ValidationError


def shard(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:1]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def store(tmp_path) -> LocalArchiveStore:
    return LocalArchiveStore(tmp_path / "archive")


def _put(store, name="www", revision=1, body=b"sealed bundle bytes") -> ArchiveRef:
    return store.put(ArchivePutRequest(name=name, revision=revision, body=body))


def test_local_store_implements_the_contract(store):
    assert isinstance(store, ArchiveStore)
    assert store.store_type == "local"


def test_put_then_get_returns_the_body(store):
    ref = _put(store)
    assert ref.location == "www/000001.bundle"
    assert ref.sha256 == hashlib.sha256(b"sealed bundle bytes").hexdigest()
    assert store.get(ArchiveGetRequest(ref=ref)).body == b"sealed bundle bytes"


def test_bundle_files_are_0600_under_0700_directories(store):
    path = store.path_of(_put(store).location)
    assert path == store.root / "shards" / shard("www") / "www.000001.bundle"
    assert _mode(path) == 0o600
    for directory in (store.root, store.root / "shards", path.parent):
        assert _mode(directory) == 0o700


def test_bundle_files_are_0600_even_under_a_permissive_umask(store):
    previous = os.umask(0)
    try:
        _put(store)
    finally:
        os.umask(previous)
    path = store.path_of("www/000001.bundle")
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700


def test_put_is_idempotent(store):
    first = _put(store)
    mtime = os.stat(store.path_of(first.location)).st_mtime_ns
    assert _put(store) == first
    assert os.stat(store.path_of(first.location)).st_mtime_ns == mtime


def test_put_of_a_new_body_for_the_same_revision_replaces_it(store):
    _put(store, body=b"first")
    ref = _put(store, body=b"second")
    assert store.get(ArchiveGetRequest(ref=ref)).body == b"second"


def test_modified_bundle_is_an_integrity_error(store):
    ref = _put(store)
    store.path_of(ref.location).write_bytes(b"sealed bundle bytez")
    with pytest.raises(IntegrityError, match="was modified"):
        store.get(ArchiveGetRequest(ref=ref))


def test_missing_bundle_is_an_integrity_error(store):
    ref = _put(store)
    store.path_of(ref.location).unlink()
    with pytest.raises(IntegrityError, match="is missing"):
        store.get(ArchiveGetRequest(ref=ref))


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "a\\b", "x..y", "nul\0"])
def test_path_traversal_names_are_refused(store, name):
    with pytest.raises(ValidationError):
        _put(store, name=name)
    assert not store.root.exists()


@pytest.mark.parametrize("revision", [-1, True, "1"])
def test_revision_must_be_a_whole_number(store, revision):
    with pytest.raises(ValidationError):
        _put(store, revision=revision)


@pytest.mark.parametrize("location", ["../x/000001.bundle", "/etc/passwd", "www/../../x", "www"])
def test_get_refuses_locations_outside_the_store(store, location):
    with pytest.raises(IntegrityError, match="not a bundle"):
        store.get(ArchiveGetRequest(ref=ArchiveRef(location=location, sha256="0" * 64)))


def test_list_returns_locations_by_prefix(store):
    for name, revision in [("www", 1), ("www", 2), ("api", 1), ("wwwx", 1)]:
        _put(store, name=name, revision=revision)
    assert store.list() == [
        "api/000001.bundle",
        "www/000001.bundle",
        "www/000002.bundle",
        "wwwx/000001.bundle",
    ]
    assert store.list("www/") == ["www/000001.bundle", "www/000002.bundle"]
    assert store.list("a") == ["api/000001.bundle"]


def test_list_of_an_empty_store_is_empty(store):
    assert store.list() == []


def test_put_many_returns_refs_in_order_and_stores_all(store):
    requests = [
        ArchivePutRequest(name=f"cert-{i}", revision=1, body=f"body {i}".encode())
        for i in range(20)
    ]
    refs = store.put_many(requests)
    assert [r.location for r in refs] == [f"cert-{i}/000001.bundle" for i in range(20)]
    for request, ref in zip(requests, refs, strict=True):
        assert store.get(ArchiveGetRequest(ref=ref)).body == request.body
        assert _mode(store.path_of(ref.location)) == 0o600
    assert store.put_many(requests) == refs


def test_put_many_refuses_two_different_bodies_for_one_revision(store):
    requests = [
        ArchivePutRequest(name="www", revision=1, body=b"a"),
        ArchivePutRequest(name="www", revision=1, body=b"b"),
    ]
    with pytest.raises(ValidationError, match=r"www/000001\.bundle"):
        store.put_many(requests)


def test_no_temporary_files_are_left_behind(store):
    store.put_many([ArchivePutRequest(name="www", revision=i, body=b"x") for i in range(5)])
    store.put_many([ArchivePutRequest(name="www", revision=i, body=b"y") for i in range(5)])
    assert sorted(p.name for p in store.root.rglob("*") if p.is_file()) == [
        f"www.{i:06d}.bundle" for i in range(5)
    ]


def test_new_certificates_get_no_directory_of_their_own(store):
    names = [f"host{i}" for i in range(40)]
    store.put_many([ArchivePutRequest(name=n, revision=1, body=n.encode()) for n in names])
    assert [p.name for p in store.root.iterdir()] == ["shards"]
    assert {p.name for p in (store.root / "shards").iterdir()} == {shard(n) for n in names}
    assert store.names_with_bundles([*names, "other"]) == set(names)


def _legacy(store, name="www", revision=1, body=b"archived before") -> ArchiveRef:
    """A bundle as homes from before the sharded layout hold it: <root>/<name>/<revision>."""
    directory = store.root / name
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    (directory / f"{revision:06d}.bundle").write_bytes(body)
    return ArchiveRef(
        location=f"{name}/{revision:06d}.bundle", sha256=hashlib.sha256(body).hexdigest()
    )


def test_bundles_of_the_layout_before_are_read_listed_and_held(store):
    old = _legacy(store)
    assert store.get(ArchiveGetRequest(ref=old)).body == b"archived before"
    assert store.path_of(old.location) == store.root / "www" / "000001.bundle"
    new = _put(store, revision=2)
    assert store.list() == ["www/000001.bundle", "www/000002.bundle"]
    assert store.list("www/") == ["www/000001.bundle", "www/000002.bundle"]
    assert store.names_with_bundles(["www", "api"]) == {"www"}
    assert store.get(ArchiveGetRequest(ref=new)).body == b"sealed bundle bytes"
    # storing the same body again leaves the old file as it is
    assert store.put(ArchivePutRequest(name="www", revision=1, body=b"archived before")) == old
    assert not (store.root / "shards" / shard("www") / "www.000001.bundle").exists()


def test_a_modified_bundle_of_the_layout_before_is_an_integrity_error(store):
    ref = _legacy(store)
    (store.root / "www" / "000001.bundle").write_bytes(b"archived befor3")
    with pytest.raises(IntegrityError, match="was modified"):
        store.get(ArchiveGetRequest(ref=ref))


def test_a_name_from_the_layout_before_that_looks_like_the_shards_directory(store):
    # "shards" was a valid certificate name: its old bundles sit among the shard directories
    old = _legacy(store, name="shards")
    _put(store, name="shards", revision=2)
    assert store.list() == ["shards/000001.bundle", "shards/000002.bundle"]
    assert store.get(ArchiveGetRequest(ref=old)).body == b"archived before"


def test_an_incomplete_new_bundle_left_by_a_crash_is_replaced_whole(store):
    path = store.root / "shards" / shard("www") / "www.000001.bundle"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"sealed bun")  # the process died while writing it
    ref = _put(store)
    assert store.get(ArchiveGetRequest(ref=ref)).body == b"sealed bundle bytes"


def test_a_full_disk_is_a_retryable_archive_error(store, monkeypatch):
    def no_space(items, **options):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("certman.archive.local.create_private_many", no_space)
    with pytest.raises(
        ArchiveError, match=r"Cannot write archive bundle www/000001\.bundle"
    ) as info:
        _put(store)
    assert info.value.retryable


def test_a_failed_flush_is_a_retryable_archive_error(store, monkeypatch):
    def eio(paths):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    store.put_many(
        [ArchivePutRequest(name=f"n{i}", revision=1, body=b"x") for i in range(20)], flush=False
    )
    monkeypatch.setattr("certman.archive.local.sync_filesystems", eio)
    with pytest.raises(ArchiveError, match="Flushing the archive bundles") as info:
        store.flush()
    assert info.value.retryable


def test_names_with_bundles_answers_for_many_names_without_listing_the_root(store, monkeypatch):
    from certman.contracts.archive import SupportsNameListing

    assert isinstance(store, SupportsNameListing)
    _put(store, name="web")
    _put(store, name="webby")
    (store.root / "empty").mkdir()  # a directory without bundles holds nothing
    (store.root / "stray").mkdir()
    (store.root / "stray" / "notes.txt").write_text("not a bundle")
    monkeypatch.setattr(store, "list", lambda prefix="": pytest.fail("listed the root"))
    asked = ["web", "mail", "empty", "stray", "webby", "../web"]
    assert store.names_with_bundles(asked) == {"web", "webby"}
    assert LocalArchiveStore(store.root / "missing").names_with_bundles(["web"]) == set()


def test_names_with_bundles_on_an_unreadable_directory_is_an_archive_error(store, monkeypatch):
    _put(store, name="web")

    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", denied)
    with pytest.raises(ArchiveError, match=r"Cannot read archive listing .*Permission denied"):
        store.names_with_bundles(["web"])


def test_a_failed_batch_leaves_no_new_bundle_behind(store, monkeypatch):
    real_write_all = fileio._write_all
    written = []

    def fail_on_the_third(fd, data):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(data)
        real_write_all(fd, data)

    monkeypatch.setattr(fileio, "_write_all", fail_on_the_third)
    requests = [ArchivePutRequest(name=f"h{i}", revision=1, body=b"x") for i in range(30)]
    with pytest.raises(ArchiveError, match="30 bundles"):
        store.put_many(requests)
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_storing_a_bundle_again_in_the_layout_before_keeps_it_as_it_is(store):
    for name in ("shards", "www"):  # among the shard directories, then beside them
        old = _legacy(store, name=name)
        assert store.put(ArchivePutRequest(name=name, revision=1, body=b"archived before")) == old
        assert store.path_of(old.location) == store.root / name / "000001.bundle"


def test_a_batch_among_stored_bundles_keeps_equal_ones_and_replaces_changed_ones(store):
    """A resumed batch: some bundles are stored already (one the same, one different)."""
    same = ArchivePutRequest(name="same", revision=1, body=b"kept")
    changed = ArchivePutRequest(name="changed", revision=1, body=b"old")
    store.put_many([same, changed])
    kept = os.stat(store.path_of("same/000001.bundle"))
    requests = [
        same,
        ArchivePutRequest(name="changed", revision=1, body=b"new"),
        *(ArchivePutRequest(name=f"new-{i}", revision=1, body=b"n%d" % i) for i in range(30)),
    ]
    refs = store.put_many(requests)
    for request, ref in zip(requests, refs, strict=True):
        assert store.get(ArchiveGetRequest(ref=ref)).body == request.body
    again = os.stat(store.path_of("same/000001.bundle"))
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert not [p for p in store.root.rglob("*.tmp")]
