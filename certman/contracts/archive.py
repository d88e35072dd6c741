"""The archive stores' contract: encrypted bundles kept by name and revision (local
directory, S3 with SSE), each read back checked against its SHA-256."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# --- archives ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ArchivePutRequest:
    """Store an encrypted bundle; ``metadata`` is non-secret (name, revision, fingerprint)."""

    name: str
    revision: int
    body: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ArchiveRef:
    """Where a bundle lives, and the SHA-256 of what was stored (checked on every read)."""

    location: str
    sha256: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ArchiveGetRequest:
    ref: ArchiveRef


@dataclass(frozen=True, kw_only=True)
class ArchiveGetResponse:
    body: bytes


@runtime_checkable
class ArchiveStore(Protocol):
    store_type: str

    def put(self, request: ArchivePutRequest) -> ArchiveRef: ...

    def get(self, request: ArchiveGetRequest) -> ArchiveGetResponse:
        """Return the body; raise IntegrityError when it is missing or its SHA-256 differs."""
        ...

    def list(self, prefix: str = "") -> list[str]: ...


@runtime_checkable
class SupportsPutMany(Protocol):
    def put_many(
        self, requests: Sequence[ArchivePutRequest], *, flush: bool = True
    ) -> list[ArchiveRef]:
        """Store many bundles at once (the bulk path); refs in the order of ``requests``.

        Every bundle is stored when it returns; with ``flush=False``, once ``flush`` has
        returned (the bulk path flushes on a thread while it prepares its next commit, and
        waits for it before that commit). On an error some may be stored already, which is
        harmless: no revision refers to them until its ref is recorded.
        """
        ...

    def flush(self) -> None:
        """Make durable what ``put_many(flush=False)`` stored; ArchiveError when it fails."""
        ...


# --- archives: optional capabilities -----------------------------------------------------


@runtime_checkable
class SupportsNameListing(Protocol):
    """An ArchiveStore that can say which certificate names hold bundles, in one pass."""

    def names_with_bundles(self, names: Sequence[str]) -> set[str]:
        """Those of ``names`` with at least one bundle stored; ArchiveError when unlistable.

        For many names at once (a bulk input of a thousand): one listing or one stat per
        name, never a listing per name of the whole store.
        """
        ...
