"""Several key wrappers behind one: seal with the configured one, unseal with whichever sealed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from certman.contracts.key_wrapper import KeyWrapper, SupportsRewrap
from certman.errors import KeyWrapError
from certman.models import EncryptionContext, WrappedKey


@dataclass
class WrapperSet:
    """The runtime's key wrapper.

    New secrets are sealed by ``primary`` (the [kms] type). A record sealed by another
    wrapper (before `certman keys rotate --to ...` moved it, or an archived bundle from
    before a move) is opened by that wrapper, built on first need by ``build_other``.
    """

    primary: KeyWrapper
    build_other: Callable[[str], KeyWrapper]
    _others: dict[str, KeyWrapper] = field(default_factory=dict)

    @property
    def wrapper_type(self) -> str:
        return self.primary.wrapper_type

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey:
        return self.primary.wrap(plaintext, context)

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        return self.for_record(wrapped).unwrap(wrapped, context)

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        if wrapped.wrapper != self.primary.wrapper_type:
            return True
        return isinstance(self.primary, SupportsRewrap) and self.primary.needs_rewrap(wrapped)

    def for_record(self, wrapped: WrappedKey) -> KeyWrapper:
        if wrapped.wrapper == self.primary.wrapper_type:
            return self.primary
        if wrapped.wrapper not in self._others:
            try:
                self._others[wrapped.wrapper] = self.build_other(wrapped.wrapper)
            except KeyWrapError:
                raise
            except Exception as e:  # a config or import problem of the other wrapper
                raise KeyWrapError(
                    f"A key sealed by {wrapped.wrapper!r} cannot be opened: {e}"
                ) from None
        return self._others[wrapped.wrapper]


def sealing_wrapper(wrapper: KeyWrapper) -> KeyWrapper:
    """The wrapper that seals new secrets (a WrapperSet's primary): the one whose own
    capabilities (rotate, preflight, fingerprint) an operator's command is about."""
    return wrapper.primary if isinstance(wrapper, WrapperSet) else wrapper
