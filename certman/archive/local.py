"""The default archive store: one private file per revision under a local directory."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from certman.contracts.archive import (
    ArchiveGetRequest,
    ArchiveGetResponse,
    ArchivePutRequest,
    ArchiveRef,
)
from certman.errors import ArchiveError, IntegrityError, ValidationError
from certman.fileio import (
    create_private_dirs,
    create_private_many,
    ensure_private_dir,
    fsync_directories,
    sync_filesystems,
    write_private_many,
)

SUFFIX = ".bundle"
# Bundles are files <root>/shards/<x>/<name>.<revision:06d>.bundle, x the first hex digit of
# the SHA-256 of the name: 16 directories made once, not one per certificate (a mkdir costs
# as much as writing the bundle, and a batch spread over fewer directories changes fewer of
# them; a million bundles are 62,500 per directory, which ext4 indexes). Homes from before
# keep <root>/<name>/<revision>.bundle, read, listed and verified as it is; nothing is moved.
SHARDS = "shards"
_BUNDLE_FILE = re.compile(r"[0-9]{6,}\.bundle")
_SHARDED_FILE = re.compile(r"(?P<name>.+)\.(?P<revision>[0-9]{6,})\.bundle")
# Out of space or a flaky disk may clear up; a permission problem will not.
_RETRYABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN})


class LocalArchiveStore:
    """ArchiveStore writing private files (0600) in private directories (0700) under ``root``.

    A location is ``<name>/<revision:06d>.bundle`` whatever the layout on disk (``path_of``
    says where). Bodies arrive already encrypted (archive.bundle); this store adds
    durability (every bundle flushed before ``put`` returns, an existing one replaced
    atomically) and a SHA-256 check on every read.
    """

    store_type = "local"

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        return self._root

    @staticmethod
    def location_for(name: str, revision: int) -> str:
        """The location (``/``-separated, the same in every store) of one revision's bundle."""
        _check_name(name)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValidationError(f"Revision {revision!r} must be a whole number, 0 or more.")
        return f"{name}/{revision:06d}{SUFFIX}"

    def path_of(self, location: str) -> Path:
        """The file ``get`` reads for ``location``: its sharded path, or the path it had in the
        layout before when only that exists."""
        sharded, legacy = self._paths(location)
        return Path(legacy if not os.path.exists(sharded) and os.path.exists(legacy) else sharded)

    def put(self, request: ArchivePutRequest) -> ArchiveRef:
        """Store one bundle; storing the same body again returns the same ref."""
        return self.put_many([request])[0]

    def put_many(
        self, requests: Sequence[ArchivePutRequest], *, flush: bool = True
    ) -> list[ArchiveRef]:
        """Store many bundles, writing them all before flushing them all (the bulk path).

        Same durability as ``put`` for each: when this returns, every bundle is on disk
        (with ``flush=False``: once ``flush`` has returned). Refs come back in the order of
        ``requests``.
        """
        refs: list[ArchiveRef] = []
        bodies: dict[str, bytes] = {}  # location: body, each location once
        for request in requests:
            location = self.location_for(request.name, request.revision)
            refs.append(
                ArchiveRef(location=location, sha256=hashlib.sha256(request.body).hexdigest())
            )
            earlier = bodies.setdefault(location, request.body)
            if earlier != request.body:
                raise ValidationError(
                    f"Two different bundles for {location} in one batch; archive each "
                    "revision once."
                )
        legacy_layout = self._has_legacy_layout()
        if not legacy_layout and SHARDS not in {loc.partition("/")[0] for loc in bodies}:
            # The usual case, new revisions: each file is created exclusively, without first
            # looking for a stored one; only when one exists is every bundle read back.
            new = [(self._paths(loc)[0], body, False) for loc, body in bodies.items()]
            try:
                self._write(new, what=_describe(list(bodies)), exclusive=True, flush=flush)
                return refs
            except FileExistsError:
                pass  # nothing of this batch was kept: compare with what is stored
        pending = self._unstored(bodies, refs, legacy_layout)
        if pending:
            self._write(list(pending.values()), what=_describe(list(pending)), flush=flush)
        return refs

    def flush(self) -> None:
        """Make durable what ``put_many(flush=False)`` wrote: one sync of the archive's file
        system; ArchiveError (retryable) when the disk reports a failed write."""
        try:
            sync_filesystems([os.path.join(self._root, SHARDS)])
        except OSError as e:
            raise ArchiveError(
                f"Flushing the archive bundles under {self._root} failed: {e.strerror}; check "
                "the disk and its free space.",
                retryable=e.errno in _RETRYABLE_ERRNOS,
            ) from None

    def _unstored(
        self, bodies: dict[str, bytes], refs: Sequence[ArchiveRef], legacy_layout: bool
    ) -> dict[str, tuple[str, bytes, bool]]:
        """What to write, as location: (path, body, replaces); a bundle stored already with
        the same SHA-256 is left as it is."""
        sha256 = {ref.location: ref.sha256 for ref in refs}
        pending: dict[str, tuple[str, bytes, bool]] = {}
        # Whether each directory exists, asked once: in one that does not, no bundle can be
        # stored already, so there is nothing to read back.
        present: dict[str, bool] = {}
        for location, body in bodies.items():
            name = location.partition("/")[0]
            sharded, legacy = self._paths(location)
            try:
                stored = _read_file(sharded, present)
                if stored is None and (legacy_layout or name == SHARDS):
                    stored = _read_file(legacy, present)
            except OSError as e:
                raise _read_error(location, self._root, e) from None
            if stored is None:
                pending[location] = (sharded, body, False)
            elif hashlib.sha256(stored).hexdigest() != sha256[location]:
                pending[location] = (sharded, body, True)
        return pending

    def get(self, request: ArchiveGetRequest) -> ArchiveGetResponse:
        location = request.ref.location
        body = self._read(location)
        if body is None:
            raise IntegrityError(
                f"Archive bundle {location} is missing from {self._root}; restore it from a backup."
            )
        if hashlib.sha256(body).hexdigest() != request.ref.sha256:
            raise IntegrityError(
                f"Archive bundle {location} was modified (SHA-256 mismatch); restore it from a "
                f"backup of {self._root}."
            )
        return ArchiveGetResponse(body=body)

    def list(self, prefix: str = "") -> list[str]:
        """Locations of every stored bundle that start with ``prefix``, sorted.

        A prefix ``NAME/`` reads one shard (and NAME's directory from the layout before).
        """
        head, slash, _ = prefix.partition("/")
        try:
            if slash:
                found = self._locations_of([head]) if _valid_name(head) else set()
            else:
                found = self._all_locations(head)
        except OSError as e:
            raise _read_error(prefix or "listing", self._root, e) from None
        return sorted(loc for loc in found if loc.startswith(prefix))

    def names_with_bundles(self, names: Sequence[str]) -> set[str]:
        """SupportsNameListing: which of ``names`` have a bundle stored, one listing per
        shard asked about (and, in a home with the layout before, one per name)."""
        try:
            return {
                loc.partition("/")[0]
                for loc in self._locations_of(n for n in names if _valid_name(n))
            }
        except OSError as e:
            raise _read_error("listing", self._root, e) from None

    # --- helpers ------------------------------------------------------------------------

    def _paths(self, location: str) -> tuple[str, str]:
        """(sharded path, path in the layout before) of a location."""
        name, _, file_name = location.partition("/")
        if not (_valid_name(name) and _BUNDLE_FILE.fullmatch(file_name)):
            raise IntegrityError(
                f"Archive location {location!r} is not a bundle in a local archive; the "
                "reference was altered or belongs to another store."
            )
        root = os.fspath(self._root)
        sharded = os.path.join(root, SHARDS, _shard(name), f"{name}.{file_name}")
        return sharded, os.path.join(root, name, file_name)

    def _has_legacy_layout(self) -> bool:
        """Whether the root holds a directory of the layout before (asked before a batch, so
        that a home without any is spared a lookup per bundle)."""
        try:
            with os.scandir(self._root) as entries:
                return any(e.name != SHARDS and e.is_dir() for e in entries)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _read_error("listing", self._root, e) from None

    def _read(self, location: str) -> bytes | None:
        try:
            for path in self._paths(location):
                body = _read_file(path)
                if body is not None:
                    return body
        except OSError as e:
            raise _read_error(location, self._root, e) from None
        return None

    def _locations_of(self, names: Iterable[str]) -> set[str]:
        wanted: dict[str, set[str]] = {}
        for name in names:
            wanted.setdefault(_shard(name), set()).add(name)
        found: set[str] = set()
        legacy_layout = self._has_legacy_layout()
        for shard, shard_names in wanted.items():
            found |= self._sharded_in(self._root / SHARDS / shard, shard_names)
            for name in shard_names:  # the layout before: a directory per name
                if legacy_layout or name == SHARDS:
                    found |= self._legacy_in(self._root / name)
        return found

    def _all_locations(self, head: str) -> set[str]:
        found: set[str] = set()
        if not self._root.is_dir():
            return found
        for entry in os.scandir(self._root):
            if entry.is_dir() and _valid_name(entry.name) and entry.name.startswith(head):
                found |= self._legacy_in(Path(entry.path))
        shards = self._root / SHARDS
        if shards.is_dir():
            for entry in os.scandir(shards):
                if entry.is_dir():
                    found |= {
                        loc for loc in self._sharded_in(Path(entry.path)) if loc.startswith(head)
                    }
        return found

    @staticmethod
    def _sharded_in(directory: Path, names: set[str] | None = None) -> set[str]:
        """Locations of the bundles in one shard directory (of ``names`` only, if given:
        names that belong in this shard)."""
        try:
            files = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return set()
        found = set()
        for file_name in files:
            match = _SHARDED_FILE.fullmatch(file_name)
            if not match:
                continue
            name = match["name"]
            if names is not None:
                wanted = name in names
            else:  # only a bundle in its own shard is one that get() would find
                wanted = _valid_name(name) and _shard(name) == directory.name
            if wanted:
                found.add(f"{name}/{match['revision']}{SUFFIX}")
        return found

    @staticmethod
    def _legacy_in(directory: Path) -> set[str]:
        try:
            files = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return set()
        return {f"{directory.name}/{f}" for f in files if _BUNDLE_FILE.fullmatch(f)}

    def _write(
        self,
        items: Sequence[tuple[str, bytes, bool]],
        *,
        what: str,
        exclusive: bool = False,
        flush: bool = True,
    ) -> None:
        """Write (path, body, replaces) items; every path came from _paths, so it is safe.

        ``exclusive``: a new bundle's path that exists raises FileExistsError (and none of
        the new files is left); otherwise such a file is replaced."""
        shards = os.path.join(self._root, SHARDS)
        new = [(path, body) for path, body, replaces in items if not replaces]
        replaced = [(path, body) for path, body, replaces in items if replaces]
        directories = {os.path.dirname(path) for path, _, _ in items}
        try:
            ensure_private_dir(shards)
            missing = [d for d in directories if not os.path.isdir(d)]
            # The shards directory is flushed once below for all the new ones, not per one.
            create_private_dirs(missing)
            try:
                try:
                    # New bundles: nothing refers to them until the inventory records the
                    # refs put_many returns, so each is written in place, flushed at once.
                    create_private_many(new, flush=flush)
                except FileExistsError:  # written meanwhile by another process: replace it
                    if exclusive:
                        raise
                    replaced += new
                # A stored bundle is replaced atomically (temporary file, rename).
                write_private_many(replaced)
            finally:  # the directories made here stay, so they are flushed in any case
                if missing:
                    fsync_directories([Path(shards)])
        except OSError as e:
            if exclusive and isinstance(e, FileExistsError):
                raise  # put_many reads back what is stored
            raise ArchiveError(
                f"Cannot write archive bundle {what} under {self._root}: {e.strerror}; "
                "check that the directory is writable and has free space.",
                retryable=e.errno in _RETRYABLE_ERRNOS,
            ) from None


def _read_file(path: str, present: dict[str, bool] | None = None) -> bytes | None:
    """The file's bytes, None when it does not exist; ``present`` caches directory checks."""
    if present is not None:
        directory = os.path.dirname(path)
        if directory not in present:
            present[directory] = os.path.isdir(directory)
        if not present[directory]:
            return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _describe(locations: list[str]) -> str:
    return ", ".join(locations) if len(locations) <= 3 else f"{len(locations)} bundles"


def _shard(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:1]


def _valid_name(name: str) -> bool:
    return (
        bool(name)
        and name != "."
        and ".." not in name
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _valid_name(name):
        raise ValidationError(
            f"Certificate name {name!r} cannot be an archive file name: it is empty or holds a "
            "path separator or '..'; use letters, digits, '-', '_' and single dots."
        )


def _read_error(what: str, root: Path, e: OSError) -> ArchiveError:
    return ArchiveError(
        f"Cannot read archive {what} under {root}: {e.strerror}; check the directory's "
        "permissions.",
        retryable=e.errno in _RETRYABLE_ERRNOS,
    )
