"""Atomic private writes (certman.fileio), which the archive and the master key rely on."""

from __future__ import annotations

import os
import stat

import pytest

import certman.fileio as fileio
from certman.fileio import ensure_private_dir, write_private, write_private_many


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_private_creates_a_0600_file(tmp_path):
    path = tmp_path / "secret"
    write_private(path, b"data")
    assert path.read_bytes() == b"data"
    assert _mode(path) == 0o600


def test_write_private_replaces_atomically_and_keeps_the_mode(tmp_path):
    path = tmp_path / "secret"
    write_private(path, b"old")
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600


def test_write_private_leaves_no_temporary_file_after_success(tmp_path):
    write_private(tmp_path / "secret", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_write_private_leaves_no_temporary_file_after_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    write_private(path, b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fileio.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_private(path, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
    assert path.read_bytes() == b"old"


def test_write_private_leaves_no_temporary_file_after_a_failed_rename(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_private(tmp_path / "secret", b"data")
    assert list(tmp_path.iterdir()) == []


def test_write_private_many_cleans_every_temporary_file_on_failure(tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def replace_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace_then_fail)
    items = [(tmp_path / f"f{i}", b"x") for i in range(4)]
    with pytest.raises(OSError):
        write_private_many(items)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0"]


def test_write_private_many_spans_more_files_than_one_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_OPEN_FILES_PER_CHUNK", 3)
    items = [(tmp_path / f"f{i}", bytes([i])) for i in range(10)]
    write_private_many(items)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}" for i in range(10))
    assert all(path.read_bytes() == data for path, data in items)


def test_write_private_without_overwrite_refuses_an_existing_file(tmp_path):
    path = tmp_path / "secret"
    write_private(path, b"old")
    with pytest.raises(FileExistsError):
        write_private(path, b"new", overwrite=False)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_temporary_file_is_never_readable_by_others(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spying_write(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", spying_write)
    previous = os.umask(0)
    try:
        write_private(tmp_path / "secret", b"data")
    finally:
        os.umask(previous)
    assert seen == [0o600]


def test_ensure_private_dir_creates_missing_parents_0700(tmp_path):
    path = ensure_private_dir(tmp_path / "a" / "b")
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(path) == 0o700
    assert ensure_private_dir(path) == path


def test_ensure_private_dir_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_private_dir(tmp_path / "file")


def test_write_private_many_in_one_batch_replaces_and_creates_0600_files(tmp_path):
    # more files than are flushed one by one: the batched path (one sync before the
    # renames, one after), over a mix of existing and new paths
    old = [(tmp_path / f"f{i}", b"old") for i in range(10)]
    write_private_many(old)
    items = [(tmp_path / f"f{i}", f"new {i}".encode()) for i in range(40)]
    write_private_many(items)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}" for i in range(40))
    assert all(path.read_bytes() == data and _mode(path) == 0o600 for path, data in items)


def test_create_private_dirs_makes_0700_dirs_and_keeps_existing_ones(tmp_path):
    (tmp_path / "kept").mkdir(mode=0o755)
    fileio.create_private_dirs([tmp_path / "new", tmp_path / "kept"])
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(tmp_path / "kept") == 0o755


def test_create_private_dirs_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        fileio.create_private_dirs([tmp_path / "file"])


@pytest.mark.parametrize("flush", [True, False])
def test_create_private_many_leaves_a_batch_flush_to_the_caller_only_when_asked(
    tmp_path, monkeypatch, flush
):
    syncs: list[set[str]] = []
    monkeypatch.setattr(fileio, "sync_filesystems", lambda paths: syncs.append(set(paths)))
    items = [(tmp_path / f"b{i}", b"bundle %d" % i) for i in range(40)]
    fileio.create_private_many(items, flush=flush)
    assert syncs == ([{str(tmp_path)}] if flush else [])
    assert all(path.read_bytes() == data and _mode(path) == 0o600 for path, data in items)


def test_sync_filesystems_syncs_each_file_system_once_with_syncfs(tmp_path, monkeypatch):
    assert fileio._syncfs() is not None  # Linux: syncfs(2) from libc
    fileio.sync_filesystems([tmp_path])  # the real call succeeds
    calls: list[int] = []
    monkeypatch.setattr(fileio, "_syncfs", lambda: lambda fd: calls.append(fd) or 0)
    (tmp_path / "a").mkdir()
    fileio.sync_filesystems([tmp_path, tmp_path / "a", tmp_path])
    assert len(calls) == 1  # one file system


def test_sync_filesystems_reports_a_failed_write_back(tmp_path, monkeypatch):
    import ctypes
    import errno

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(fileio, "_syncfs", lambda: failing)
    with pytest.raises(OSError) as info:
        fileio.sync_filesystems([tmp_path])
    assert info.value.errno == errno.EIO


def test_sync_filesystems_falls_back_to_os_sync_without_syncfs(tmp_path, monkeypatch):
    syncs: list[None] = []
    monkeypatch.setattr(fileio, "_syncfs", lambda: None)
    monkeypatch.setattr(fileio.os, "sync", lambda: syncs.append(None))
    fileio.sync_filesystems([tmp_path])
    assert syncs == [None]
