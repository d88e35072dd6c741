"""The key wrappers' contract: envelope encryption of secrets (local master key, AWS KMS,
PKCS#11 HSM), bound to an encryption context."""

from __future__ import annotations

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
