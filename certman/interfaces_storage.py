"""The contracts of sealed secrets and stored bundles: key wrappers and archive stores.

Part of certman/interfaces.py, which re-exports every name here. Each operation takes
one request dataclass and returns one response dataclass (or plain bytes, for sealing);
optional capabilities are separate small protocols, detected with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from certman.models import EncryptionContext, WrappedKey

# --- key wrappers ------------------------------------------------------------------------


@runtime_checkable
class KeyWrapper(Protocol):
    """Envelope encryption of secrets (DESIGN.md, "Security invariants").

    ``wrap`` uses a fresh 256-bit data key per call; ``unwrap`` with any other context
    than the one given to ``wrap`` raises KeyWrapError.
    """

    wrapper_type: str

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes: ...


@runtime_checkable
class SupportsRewrap(Protocol):
    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        """True when ``wrapped`` is not sealed under this wrapper's current key."""
        ...


@runtime_checkable
class SupportsVersions(Protocol):
    """A wrapper that keeps its own key versions (the local master key file)."""

    def rotate(self) -> int:
        """Add a new active version and retire the current one (kept to unwrap); return it."""
        ...

    def fingerprint(self) -> str:
        """A short, non-secret identifier of the active version (for `certman doctor`)."""
        ...


@runtime_checkable
class SupportsKeyCreation(Protocol):
    def ensure_key(self) -> bool:
        """Create the wrapping key where the wrapper's service has none (an HSM token);
        True when it was created. Never replaces an existing key."""
        ...


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
