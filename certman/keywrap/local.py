"""The embedded default key wrapper: a versioned master key in a private local file."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certman.clock import Clock, SystemClock
from certman.errors import AlreadyExistsError, KeyWrapError
from certman.fileio import ensure_private_dir, exclusive_lock, write_private
from certman.keywrap.envelope import (
    DATA_KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    check_format,
    describe,
    new_data_key,
    not_for_this_context,
    open_sealed,
    seal,
)
from certman.models import EncryptionContext, WrappedKey

FILE_FORMAT = 1
KEY_ID_PREFIX = "local:v"
# Recorded in every sealed record so that a failed unseal can tell "another master key"
# apart from "another context or altered"; it is a hash, not key material.
FINGERPRINT_FIELD = "master_key_fingerprint"

_EDK_SIZE = NONCE_SIZE + DATA_KEY_SIZE + TAG_SIZE
_FINGERPRINT_DOMAIN = b"certman local master key\x00"

Status = Literal["active", "retired"]


@dataclass(frozen=True, kw_only=True)
class MasterKeyVersion:
    """One version of the master key. Retired versions still unseal; only the active one seals."""

    version: int
    key: bytes = field(repr=False)
    status: Status
    created_at: datetime

    @property
    def fingerprint(self) -> str:
        return master_key_fingerprint(self.key)


def master_key_fingerprint(key: bytes) -> str:
    """A short, non-secret identifier of a master key version (for `doctor`, and logs)."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + key).hexdigest()[:16]


@dataclass(frozen=True)
class _KeyRing:
    """Everything ``wrap``/``unwrap`` need, built once per load or rotation, swapped whole."""

    versions: tuple[MasterKeyVersion, ...]
    ciphers: dict[int, AESGCM]
    fingerprints: dict[int, str]
    active: int

    @classmethod
    def build(cls, versions: Sequence[MasterKeyVersion]) -> _KeyRing:
        active = [v.version for v in versions if v.status == "active"]
        return cls(
            versions=tuple(sorted(versions, key=lambda v: v.version)),
            ciphers={v.version: AESGCM(v.key) for v in versions},
            fingerprints={v.version: v.fingerprint for v in versions},
            active=active[0],
        )


class LocalMasterKey:
    """KeyWrapper + SupportsRewrap over a master key file (JSON, mode 0600).

    Each ``wrap`` draws a fresh data key, seals the plaintext under it (envelope.seal) and
    seals the data key under the active master key version, both with the context as AAD.
    ``rotate`` adds a version and retires the previous one, which keeps unsealing, the
    way AWS KMS keeps old backing keys; back the file up again after every rotation.
    """

    wrapper_type = "local"

    def __init__(
        self,
        path: Path,
        versions: Sequence[MasterKeyVersion],
        *,
        clock: Clock | None = None,
    ) -> None:
        _check_versions(path, versions)
        self._path = path
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._ring = _KeyRing.build(versions)
        self._loaded_stat = _stat_signature(path)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str, *, clock: Clock | None = None) -> LocalMasterKey:
        """Write a new master key file with one active version; never overwrites one."""
        path = Path(path)
        clock = clock or SystemClock()
        if path.exists() or path.is_symlink():
            raise _already_exists(path)
        first = MasterKeyVersion(
            version=1, key=new_data_key(), status="active", created_at=clock.now()
        )
        try:
            ensure_private_dir(path.parent)
            write_private(path, _encode([first]), overwrite=False)
        except FileExistsError:
            raise _already_exists(path) from None
        except OSError as e:
            raise KeyWrapError(
                f"Cannot write the master key file {path}: {e.strerror}; check that its "
                "directory is writable by this user."
            ) from None
        return cls(path, [first], clock=clock)

    @classmethod
    def load(cls, path: Path | str, *, clock: Clock | None = None) -> LocalMasterKey:
        """Read the master key file, refusing one that group or others could read."""
        path = Path(path)
        return cls(path, _read_versions(path), clock=clock)

    # --- KeyWrapper ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def active_version(self) -> int:
        return self._ring.active

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey:
        ring = self._ring
        # A fresh data key and the two nonces (its own, the payload's) in one draw.
        random = os.urandom(DATA_KEY_SIZE + 2 * NONCE_SIZE)
        data_key = random[:DATA_KEY_SIZE]
        nonce = random[DATA_KEY_SIZE : DATA_KEY_SIZE + NONCE_SIZE]
        encrypted_data_key = nonce + ring.ciphers[ring.active].encrypt(
            nonce, data_key, context.aad()
        )
        return seal(
            plaintext,
            context,
            nonce=random[DATA_KEY_SIZE + NONCE_SIZE :],
            data_key=data_key,
            encrypted_data_key=encrypted_data_key,
            wrapper=self.wrapper_type,
            key_id=f"{KEY_ID_PREFIX}{ring.active}",
            extra={FINGERPRINT_FIELD: ring.fingerprints[ring.active]},
        )

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        if wrapped.wrapper != self.wrapper_type:
            raise KeyWrapError(
                f"{describe(context)} was sealed by the {wrapped.wrapper!r} key wrapper, not "
                "the local master key; configure that wrapper to open it."
            )
        check_format(wrapped, context)
        version = _parse_key_id(wrapped.key_id, context)
        if version not in self._ring.ciphers:
            self.refresh()  # rotated by another process since we loaded the file?
        ring = self._ring
        if version not in ring.ciphers:
            raise KeyWrapError(
                f"{describe(context)} was sealed with master key version {version}, which "
                f"{self._path} does not have: the master key does not match (wrong or replaced "
                "master key file). Restore the master key file that sealed it from your backup."
            )
        recorded = wrapped.extra.get(FINGERPRINT_FIELD)
        if recorded is not None and recorded != ring.fingerprints[version]:
            raise self._mismatch(context, version)
        edk = wrapped.encrypted_data_key
        if len(edk) != _EDK_SIZE:
            raise KeyWrapError(f"{describe(context)} cannot be unsealed: the record was altered.")
        try:
            data_key = ring.ciphers[version].decrypt(
                edk[:NONCE_SIZE], edk[NONCE_SIZE:], context.aad()
            )
        except InvalidTag:
            if recorded is None:
                raise KeyWrapError(
                    f"{describe(context)} cannot be unsealed with {self._path}: the master key "
                    "does not match (wrong or replaced master key file), or the record was "
                    "sealed for another certificate, revision or purpose, or altered."
                ) from None
            raise not_for_this_context(context) from None
        return open_sealed(wrapped, context, data_key)

    # --- SupportsRewrap and rotation ----------------------------------------------------

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        ring = self._ring
        if wrapped.wrapper != self.wrapper_type:
            return True
        if wrapped.key_id != f"{KEY_ID_PREFIX}{ring.active}":
            return True
        recorded = wrapped.extra.get(FINGERPRINT_FIELD)
        return recorded is not None and recorded != ring.fingerprints[ring.active]

    def rotate(self) -> int:
        """Add a new active version, retire the current one, persist atomically; return it.

        The file is re-read under an exclusive lock first, so two rotations at once (CLI
        and service) never lose a version that already sealed something.
        """
        try:
            with self._lock, exclusive_lock(self._path.with_name(self._path.name + ".lock")):
                on_disk = _read_versions(self._path)
                self._check_same_keys(on_disk)
                number = max(v.version for v in on_disk) + 1
                now = self._clock.now()
                versions = [replace(v, status="retired") for v in on_disk]
                versions.append(
                    MasterKeyVersion(
                        version=number, key=new_data_key(), status="active", created_at=now
                    )
                )
                write_private(self._path, _encode(versions))
                self._ring = _KeyRing.build(versions)
                self._loaded_stat = _stat_signature(self._path)
                return number
        except OSError as e:
            raise KeyWrapError(
                f"Cannot rotate the master key in {self._path}: {e.strerror}; nothing was "
                "changed. Check that the file's directory is writable by this user."
            ) from None

    def refresh(self) -> bool:
        """Pick up versions another process added to the file (a `certman key rotate`).

        Returns True when the file changed and was taken; a file that no longer holds the
        versions loaded before is ignored (unwrap then reports the mismatch).
        """
        with self._lock:
            if _stat_signature(self._path) == self._loaded_stat:
                return False
            try:
                on_disk = _read_versions(self._path)
                self._check_same_keys(on_disk)
            except KeyWrapError:
                return False
            self._ring = _KeyRing.build(on_disk)
            self._loaded_stat = _stat_signature(self._path)
            return True

    def fingerprint(self) -> str:
        """The active version's fingerprint: short, non-secret, for `certman doctor`."""
        return self._ring.fingerprints[self._ring.active]

    def versions(self) -> tuple[MasterKeyVersion, ...]:
        return self._ring.versions

    # --- helpers ------------------------------------------------------------------------

    def _check_same_keys(self, on_disk: Sequence[MasterKeyVersion]) -> None:
        disk = {v.version: v.fingerprint for v in on_disk}
        for number, fingerprint in self._ring.fingerprints.items():
            if disk.get(number) != fingerprint:
                raise KeyWrapError(
                    f"The master key file {self._path} no longer holds master key version "
                    f"{number} as loaded: it was replaced by another process. Restore it from "
                    "your backup before rotating."
                )

    def _mismatch(self, context: EncryptionContext, version: int) -> KeyWrapError:
        return KeyWrapError(
            f"{describe(context)} cannot be unsealed: the master key does not match (wrong or "
            f"replaced master key file); version {version} in {self._path} is not the one that "
            "sealed it. Restore the master key file that sealed it from your backup."
        )


# --- the file --------------------------------------------------------------------------


def _read_versions(path: Path) -> list[MasterKeyVersion]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyWrapError(
            f"The master key file {path} is missing; restore it from your backup (sealed keys "
            "cannot be opened without it), or run `certman init` on a new home."
        ) from None
    except OSError as e:
        raise KeyWrapError(
            f"Cannot read the master key file {path}: {e.strerror}; run certman as the user "
            "that owns it."
        ) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise KeyWrapError(
                f"The master key file {path} is open to group or others (mode {mode:04o}); "
                f"run `chmod 600 {path}` and try again."
            )
        raw = f.read()
    versions = _decode(path, raw)
    _check_versions(path, versions)
    return versions


def _encode(versions: Sequence[MasterKeyVersion]) -> bytes:
    doc = {
        "format": FILE_FORMAT,
        "versions": [
            {
                "version": v.version,
                "key": base64.b64encode(v.key).decode(),
                "status": v.status,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _decode(path: Path, raw: bytes) -> list[MasterKeyVersion]:
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _malformed(path, "not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise _malformed(path, f"expected format {FILE_FORMAT}")
    entries = doc.get("versions")
    if not isinstance(entries, list) or not entries:
        raise _malformed(path, "no key versions")
    versions = []
    for index, entry in enumerate(entries):
        try:
            key = base64.b64decode(entry["key"], validate=True)
            version = MasterKeyVersion(
                version=int(entry["version"]),
                key=key,
                status=entry["status"],
                created_at=datetime.fromisoformat(entry["created_at"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            # never echo the entry: it holds key material
            raise _malformed(path, f"version entry {index + 1} is incomplete") from None
        if len(key) != DATA_KEY_SIZE:
            raise _malformed(path, f"version {version.version} is not a 256-bit key")
        versions.append(version)
    return versions


def _check_versions(path: Path, versions: Sequence[MasterKeyVersion]) -> None:
    numbers = [v.version for v in versions]
    if len(set(numbers)) != len(numbers):
        raise _malformed(path, "a version number appears twice")
    if any(v.status not in ("active", "retired") for v in versions):
        raise _malformed(path, "a status is neither active nor retired")
    if sum(v.status == "active" for v in versions) != 1:
        raise _malformed(path, "exactly one version must be active")


def _parse_key_id(key_id: str, context: EncryptionContext) -> int:
    number = key_id.removeprefix(KEY_ID_PREFIX)
    if number == key_id or not number.isdigit():
        raise KeyWrapError(
            f"{describe(context)} names master key {key_id!r}, which is not a local master key "
            "version; the record was altered."
        )
    return int(number)


def _malformed(path: Path, what: str) -> KeyWrapError:
    return KeyWrapError(
        f"The master key file {path} is malformed ({what}); restore it from your backup."
    )


def _already_exists(path: Path) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"The master key file {path} already exists; certman never overwrites a master key "
        "(keys sealed under it would be lost). Use it as is, or move it away first."
    )


def _stat_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
