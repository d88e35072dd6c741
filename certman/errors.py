"""One error root for certman; subclasses say what kind of failure it was."""

from __future__ import annotations

from datetime import datetime


class CertmanError(Exception):
    """Root of every error certman raises on purpose.

    ``exit_code`` is what the CLI exits with (1: the operation failed, 2: bad input).
    ``retryable`` tells the lifecycle and the service whether trying again later can help.
    Messages are one or two sentences for an operator: what was wrong, what to do.
    They never contain a secret.
    """

    exit_code: int = 1
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        from certman.redact import scrub  # on the first error, not at every command's start

        message = scrub(message)  # the one gate every certman error passes: no secret in it
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


# --- bad input (exit 2): nothing was changed -------------------------------------------


class InputError(CertmanError):
    """The operator asked for something invalid; nothing was changed."""

    exit_code = 2


class ConfigError(InputError):
    """The configuration is malformed or names something unknown."""


class ValidationError(InputError):
    """A value given on the command line or through the API is not acceptable."""


class PolicyError(InputError):
    """The request is well formed but the CA's signing policy forbids it."""


class NotFoundError(InputError):
    """A named certificate, CA, issuer or target does not exist."""


class AlreadyExistsError(InputError):
    """Something with that name already exists, or a file would be overwritten."""


# --- failed operations (exit 1) ---------------------------------------------------------


class OperationError(CertmanError):
    """An operation was valid but failed."""


class KeyWrapError(OperationError):
    """Sealing or unsealing a key failed (missing or wrong master key, KMS, HSM)."""


class IssuanceError(OperationError):
    """The issuer did not produce a certificate."""


class ArchiveError(OperationError):
    """An archive bundle could not be written or read."""


class IntegrityError(OperationError):
    """Stored data was modified or is missing (archive bundle, audit chain)."""


class StateTransitionError(OperationError):
    """A revision was asked to move to a state the lifecycle does not allow from its own."""


class InventoryError(OperationError):
    """The inventory database is unreachable, not migrated, or in use."""


class DeployError(OperationError):
    """A deployment target could not be switched or verified."""


def one_line(error: BaseException) -> str:
    """Any exception as one line for a log (a database driver's first line, not its SQL)."""
    orig = getattr(error, "orig", None) or error
    from certman.redact import scrub

    text = scrub(str(orig)).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__
