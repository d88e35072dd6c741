"""Atomic, durable writes of private files (0600) into private directories (0700)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

# Descriptors held open at once by write_private_many; well under the common 1024 limit.
_OPEN_FILES_PER_CHUNK = 256
# Up to this many files, each is flushed on its own; beyond it, write_private_many syncs once.
_SYNC_PER_FILE_UP_TO = 16

# O_CLOEXEC so a child process started meanwhile (a deploy reload command) never
# inherits a descriptor on a private file; O_NOFOLLOW so a planted symlink is not followed.
_CREATE_FLAGS = (
    os.O_CREAT
    | os.O_EXCL
    | os.O_WRONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


def write_private(
    path: Path | str,
    data: bytes,
    *,
    mode: int = PRIVATE_FILE_MODE,
    fsync: bool = True,
    overwrite: bool = True,
) -> None:
    """Atomically replace ``path`` with ``data``, readable only by its owner.

    The bytes go to a temporary file in the same directory, created with ``O_EXCL`` and
    ``mode`` (so no other user can ever read it, not even briefly), are flushed, and the
    file is renamed over ``path``; the directory is then flushed so the rename survives a
    crash. With ``overwrite=False`` an existing ``path`` is never replaced
    (FileExistsError). On any error the temporary file is removed and ``path`` is
    untouched. Raises OSError; callers translate it into their own certman error.
    """
    write_private_many([(Path(path), data)], mode=mode, fsync=fsync, overwrite=overwrite)


def write_private_many(
    items: Sequence[tuple[Path | str, bytes]],
    *,
    mode: int = PRIVATE_FILE_MODE,
    fsync: bool = True,
    overwrite: bool = True,
    modes: Mapping[Path, int] | None = None,
    owner: tuple[int, int] | None = None,
) -> None:
    """``write_private`` for many files in one pass: the bulk path (archiving 1,000 bundles).

    All files are written first, then flushed, then renamed into place, then each distinct
    directory is flushed once. Durability is the same as one ``write_private`` per file
    (no rename happens before its content is on disk), with fewer waits on the disk.
    The batch is not atomic as a whole: a crash half-way leaves some paths new and some
    old, each one whole; the renames run back to back, so a reader (a server reloading a
    certificate and its key) sees a mixed set only within that instant. ``modes`` overrides
    ``mode`` per path; ``owner`` (uid, gid; -1 keeps one) is set on each temporary file
    before its rename. On any error no temporary file is left behind.
    """
    # Past a few files, one sync of each file system concerned is far cheaper than a flush
    # per file and per directory (measured: 500 files, ~20-170 ms for os.sync() against
    # ~150 ms for fsyncs from 32 threads and ~500 ms one after the other), and gives the
    # same guarantee: contents on disk before any rename, renames on disk before we return.
    batch = fsync and len(items) > _SYNC_PER_FILE_UP_TO
    staged: list[tuple[str, str]] = []  # (temporary, final)
    installed = 0
    try:
        for start in range(0, len(items), _OPEN_FILES_PER_CHUNK):
            chunk = items[start : start + _OPEN_FILES_PER_CHUNK]
            staged.extend(
                _stage_chunk(
                    chunk, mode=mode, fsync=fsync and not batch, modes=modes or {}, owner=owner
                )
            )
        if batch:
            sync_filesystems(_parents(items))
        for temp, path in staged:
            _install(temp, path, overwrite=overwrite)
            installed += 1
    finally:
        for temp, _ in staged[installed:]:
            _remove_quietly(temp)
    if batch:
        sync_filesystems(_parents(items))
    elif fsync:
        fsync_directories(Path(target).parent for target, _ in items)


def create_private_many(
    items: Sequence[tuple[Path | str, bytes]], *, mode: int = PRIVATE_FILE_MODE, flush: bool = True
) -> None:
    """Create each new file with its bytes, readable only by its owner, all flushed on return.

    For files that nothing refers to until this returns (new archive bundles: the inventory
    records them afterwards), each is written under its own name, without the temporary file
    and rename of ``write_private_many``, and one flush covers the batch. A crash before the
    return can leave such a file incomplete; nothing refers to it yet, and it is later
    replaced through ``write_private_many``. Raises FileExistsError when a path exists
    (nothing is overwritten), OSError otherwise; on any error the files this call created
    are removed. With ``flush=False`` a batch is left for the caller to flush
    (``sync_filesystems``, which it may run on a thread) before anything refers to its files.
    """
    batch = len(items) > _SYNC_PER_FILE_UP_TO
    created: list[str] = []
    try:
        for start in range(0, len(items), _OPEN_FILES_PER_CHUNK):
            chunk = items[start : start + _OPEN_FILES_PER_CHUNK]
            staged = _stage_chunk(
                chunk, mode=mode, fsync=not batch, modes={}, owner=None, in_place=True
            )
            created.extend(path for path, _ in staged)
        if batch:
            if flush:
                sync_filesystems(_parents(items))
        else:
            fsync_directories(Path(target).parent for target, _ in items)
    except BaseException:
        for path in created:
            _remove_quietly(path)
        raise


def create_private_dirs(directories: Iterable[Path | str], mode: int = PRIVATE_DIR_MODE) -> None:
    """Create each directory (its parent exists) with ``mode``; existing ones are kept as they are.

    Nothing is flushed: the caller makes the new entries durable, once for all of them
    (``fsync_directories`` on the parents, or the sync of ``write_private_many``).
    Raises NotADirectoryError when a path exists as something else.
    """
    for directory in directories:
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(f"{directory} exists but is not a directory.") from None
            continue  # created before, or meanwhile by another process: theirs to keep
        os.chmod(directory, mode)  # mkdir's mode is filtered through the umask


def ensure_private_dir(
    path: Path | str, mode: int = PRIVATE_DIR_MODE, *, fsync: bool = True
) -> Path:
    """Create ``path`` and any missing parents with ``mode``; existing ones are left as they are.

    Each newly created directory is recorded durably in its parent (the parent is flushed);
    with ``fsync=False`` the caller flushes the parents itself, once for many directories.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue  # created meanwhile by another process: theirs to keep
        os.chmod(directory, mode)  # mkdir's mode is filtered through the umask
        if fsync:
            fsync_directories([directory.parent])
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists but is not a directory.")
    return path


def sync_filesystems(paths: Iterable[Path | str]) -> None:
    """Flush everything written to the file systems holding ``paths``, each once.

    On Linux this is syncfs(2) per file system, which also reports a write-back error
    (EIO, ENOSPC) met since the last sync as OSError; os.sync(), the fallback elsewhere,
    flushes every file system and reports nothing.
    """
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    devices: set[int] = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            device = os.fstat(fd).st_dev
            if device in devices:
                continue
            devices.add(device)
            if syncfs(fd) != 0:  # ctypes releases the GIL for the call
                import ctypes

                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code), os.fspath(path))
        finally:
            os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, or None where there is none (ctypes is loaded only when a batch is
    flushed: most commands never need it)."""
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


def _parents(items: Iterable[tuple[Path | str, bytes]]) -> set[str]:
    return {os.path.dirname(os.fspath(path)) or "." for path, _ in items}


def fsync_directories(directories: Iterable[Path]) -> None:
    """Flush each distinct directory once, so that renames and creations in it are durable."""
    seen: set[Path] = set()
    for directory in directories:
        directory = Path(directory)
        if directory in seen:
            continue
        seen.add(directory)
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created 0600, left in place)."""
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _stage_chunk(
    chunk: Sequence[tuple[Path | str, bytes]],
    *,
    mode: int,
    fsync: bool,
    modes: Mapping[Path, int],
    owner: tuple[int, int] | None,
    in_place: bool = False,
) -> list[tuple[str, str]]:
    """Write every file of ``chunk`` to a temporary sibling (or, ``in_place``, to the new
    file itself), then flush them all."""
    opened: list[tuple[int, str, str]] = []  # (fd, temporary, final)
    try:
        for path, data in chunk:
            # Plain strings, not Path objects: this loop runs once per bundle on the bulk path.
            final = os.fspath(path)
            if in_place:
                temp = final
            else:
                head, tail = os.path.split(final)
                temp = os.path.join(head, f".{tail}.{secrets.token_hex(6)}.tmp")
            file_mode = modes.get(Path(final), mode) if modes else mode
            fd = os.open(temp, _CREATE_FLAGS, file_mode)
            opened.append((fd, temp, final))
            if owner is not None:
                os.fchown(fd, *owner)  # before any byte is written or the name is visible
            os.fchmod(fd, file_mode)  # the umask may have narrowed the mode; make it exact
            _write_all(fd, data)
        if fsync:
            for fd, _, _ in opened:
                os.fsync(fd)
    except BaseException:
        for _, temp, _ in opened:
            _remove_quietly(temp)
        raise
    finally:
        for fd, _, _ in opened:
            os.close(fd)
    return [(temp, final) for _, temp, final in opened]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _install(temp: str, path: str, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, path)
        return
    # link() fails with FileExistsError when ``path`` exists: no check-then-write race.
    os.link(temp, path)
    os.unlink(temp)


def _remove_quietly(temp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
