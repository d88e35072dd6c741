"""The default archive store: one private file per revision under a local directory."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from certman.errors import ArchiveError, IntegrityError, ValidationError
from certman.fileio import (
    create_private_dirs,
    ensure_private_dir,
    fsync_directories,
    write_private_many,
)
from certman.interfaces import ArchiveGetRequest, ArchiveGetResponse, ArchivePutRequest, ArchiveRef

SUFFIX = ".bundle"
_BUNDLE_FILE = re.compile(r"^\d{6,}\.bundle$")
# Out of space or a flaky disk may clear up; a permission problem will not.
_RETRYABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN})


class LocalArchiveStore:
    """ArchiveStore writing ``<root>/<name>/<revision:06d>.bundle`` (files 0600, dirs 0700).

    Bodies arrive already encrypted (archive.bundle); this store adds durability
    (atomic, fsynced writes) and a SHA-256 check on every read.
    """

    store_type = "local"

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        return self._root

    @staticmethod
    def location_for(name: str, revision: int) -> str:
        """The location (relative to the root, ``/``-separated) of one revision's bundle."""
        _check_name(name)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValidationError(f"Revision {revision!r} must be a whole number, 0 or more.")
        return f"{name}/{revision:06d}{SUFFIX}"

    def put(self, request: ArchivePutRequest) -> ArchiveRef:
        """Store one bundle; storing the same body again returns the same ref."""
        return self.put_many([request])[0]

    def put_many(self, requests: Sequence[ArchivePutRequest]) -> list[ArchiveRef]:
        """Store many bundles, writing them all before flushing them all (the bulk path).

        Same durability as ``put`` for each: when this returns, every bundle is on disk.
        Refs come back in the order of ``requests``.
        """
        refs: list[ArchiveRef] = []
        pending: dict[str, bytes] = {}
        # Whether each name directory exists, asked once: in a directory that does not
        # exist yet no bundle can be stored already, so there is nothing to read back.
        present: dict[str, bool] = {}
        for request in requests:
            location = self.location_for(request.name, request.revision)
            ref = ArchiveRef(location=location, sha256=hashlib.sha256(request.body).hexdigest())
            refs.append(ref)
            earlier = pending.get(location)
            if earlier is not None:
                if earlier != request.body:
                    raise ValidationError(
                        f"Two different bundles for {location} in one batch; archive each "
                        "revision once."
                    )
                continue
            if request.name not in present:
                present[request.name] = os.path.isdir(os.path.join(self._root, request.name))
            if not present[request.name] or self._stored_sha256(location) != ref.sha256:
                pending[location] = request.body
        if pending:
            self._write(pending, [n for n, exists in present.items() if not exists])
        return refs

    def get(self, request: ArchiveGetRequest) -> ArchiveGetResponse:
        location = request.ref.location
        path = self._path_of(location)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"Archive bundle {location} is missing from {self._root}; restore it from a backup."
            ) from None
        except OSError as e:
            raise _read_error(location, self._root, e) from None
        if hashlib.sha256(body).hexdigest() != request.ref.sha256:
            raise IntegrityError(
                f"Archive bundle {location} was modified (SHA-256 mismatch); restore it from a "
                f"backup of {self._root}."
            )
        return ArchiveGetResponse(body=body)

    def list(self, prefix: str = "") -> list[str]:
        """Locations of every stored bundle that start with ``prefix``, sorted."""
        if not self._root.is_dir():
            return []
        head = prefix.split("/", 1)[0]
        try:
            directories = [
                d
                for d in self._root.iterdir()
                if d.is_dir() and _valid_name(d.name) and d.name.startswith(head)
            ]
            locations = [
                f"{d.name}/{f.name}"
                for d in directories
                for f in d.iterdir()
                if _BUNDLE_FILE.match(f.name)
            ]
        except OSError as e:
            raise _read_error(prefix or "listing", self._root, e) from None
        return sorted(loc for loc in locations if loc.startswith(prefix))

    def names_with_bundles(self, names: Sequence[str]) -> set[str]:
        """SupportsNameListing: one directory read per name; a name never used, one stat."""
        held: set[str] = set()
        for name in names:
            if not _valid_name(name):
                continue  # never a directory here
            try:
                entries = os.listdir(os.path.join(self._root, name))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise _read_error(name, self._root, e) from None
            if any(_BUNDLE_FILE.match(entry) for entry in entries):
                held.add(name)
        return held

    # --- helpers ------------------------------------------------------------------------

    def _path_of(self, location: str) -> Path:
        name, _, file_name = location.partition("/")
        if not (_valid_name(name) and _BUNDLE_FILE.match(file_name)):
            raise IntegrityError(
                f"Archive location {location!r} is not a bundle in a local archive; the "
                "reference was altered or belongs to another store."
            )
        return self._root / name / file_name

    def _stored_sha256(self, location: str) -> str | None:
        try:
            return hashlib.sha256(self._path_of(location).read_bytes()).hexdigest()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _read_error(location, self._root, e) from None

    def _write(self, bodies: dict[str, bytes], new_names: Sequence[str]) -> None:
        # Every location here came from location_for, so it is a safe relative path.
        root = os.fspath(self._root)
        items = [(os.path.join(root, location), body) for location, body in bodies.items()]
        what = ", ".join(bodies) if len(bodies) <= 3 else f"{len(bodies)} bundles"
        try:
            ensure_private_dir(self._root)
            # The root is flushed once below for all the new name directories, not per one.
            create_private_dirs(os.path.join(root, name) for name in new_names)
            write_private_many(items)
            if new_names:
                fsync_directories([self._root])
        except OSError as e:
            raise ArchiveError(
                f"Cannot write archive bundle {what} under {self._root}: {e.strerror}; "
                "check that the directory is writable and has free space.",
                retryable=e.errno in _RETRYABLE_ERRNOS,
            ) from None


def _valid_name(name: str) -> bool:
    return bool(name) and name != "." and ".." not in name and not any(c in name for c in "/\\\0")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _valid_name(name):
        raise ValidationError(
            f"Certificate name {name!r} cannot be an archive directory: it is empty or holds a "
            "path separator or '..'; use letters, digits, '-', '_' and single dots."
        )


def _read_error(what: str, root: Path, e: OSError) -> ArchiveError:
    return ArchiveError(
        f"Cannot read archive {what} under {root}: {e.strerror}; check the directory's "
        "permissions.",
        retryable=e.errno in _RETRYABLE_ERRNOS,
    )
