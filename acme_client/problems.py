"""The adapter boundary: acme, josepy and requests exceptions become certman errors here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import josepy
import requests
from acme import errors as acme_errors
from acme import messages

from certman.errors import (
    CertmanError,
    ConfigError,
    IssuanceError,
    PolicyError,
)

ERROR_PREFIX = "urn:ietf:params:acme:error:"
ABOUT_BLANK = "about:blank"  # RFC 7807 section 4.2: no type beyond the HTTP status
# RFC 8555 section 6.7 / RFC 9773 section 7.4: problems that say "the request is refused
# by the CA's policy for this identifier" - a different request could succeed, retrying this
# one cannot.
POLICY_PROBLEMS = frozenset({"rejectedIdentifier", "unsupportedIdentifier", "caa"})
# Problems that a later attempt may not hit again (RFC 8555 section 6.6 for rateLimited).
RETRYABLE_PROBLEMS = frozenset({"rateLimited", "serverInternal", "badNonce"})
# When a server asks us to slow down without saying for how long (RFC 8555 section 6.6).
DEFAULT_RATE_LIMIT_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, kw_only=True)
class Where:
    """What the operator needs in a message: which issuer, which server, which config file."""

    issuer: str
    directory: str
    config_path: str
    now: Callable[[], datetime]

    @property
    def table(self) -> str:
        return f"[issuers.{self.issuer}] of {self.config_path}"


@dataclass(frozen=True, kw_only=True)
class Subproblem:
    """One identifier's own problem inside a larger one (RFC 8555 section 6.7.1)."""

    type: str
    detail: str
    identifier: str | None

    @property
    def code(self) -> str:
        return self.type.removeprefix(ERROR_PREFIX)


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A problem document as the server sent it (RFC 7807 section 3, RFC 8555 section 6.7).

    ``type`` is the full URN ("about:blank" for an HTTP error without a problem document,
    RFC 7807 section 4.2); ``status`` the HTTP status it came with (None inside an order
    or a challenge); ``identifier`` the one it is about, when the server says.
    """

    type: str
    detail: str = ""
    status: int | None = None
    identifier: str | None = None
    subproblems: tuple[Subproblem, ...] = ()

    @property
    def code(self) -> str:
        """The type's last part ("rejectedIdentifier"); ``http-404`` for a bare HTTP error."""
        if self.type == ABOUT_BLANK:
            return f"http-{self.status}"
        return self.type.removeprefix(ERROR_PREFIX)

    def describe(self) -> str:
        """`type: detail`, the identifier, then each subproblem under its own identifier."""
        text = self.type if self.type != ABOUT_BLANK else f"HTTP {self.status}"
        if self.detail:
            text += f": {self.detail}"
        if self.identifier is not None:
            text += f" (identifier {self.identifier})"
        for sub in self.subproblems:
            text += f"; {sub.identifier or 'the request'}: {sub.type}"
            if sub.detail:
                text += f": {sub.detail}"
        return text


def problem_of(error: messages.Error) -> Problem:
    """The structured problem of an acme ``messages.Error`` (its HTTP status when known)."""
    status = getattr(error, "http_status", None)
    return Problem(
        type=str(error.typ or ABOUT_BLANK),
        detail=str(error.detail or ""),
        status=status if isinstance(status, int) else None,
        identifier=_identifier(error.identifier),
        subproblems=tuple(
            Subproblem(
                type=str(sub.typ or ABOUT_BLANK),
                detail=str(sub.detail or ""),
                identifier=_identifier(sub.identifier),
            )
            for sub in error.subproblems or ()
        ),
    )


def _identifier(identifier: messages.Identifier | None) -> str | None:
    return None if identifier is None else str(identifier.value)


class AcmeProblem(CertmanError):
    """What the ACME server answered, as certman errors carry it: every problem document
    leaves the adapter as one of the subclasses below, each holding ``problem``."""

    def __init__(
        self,
        message: str,
        *,
        problem: Problem,
        retryable: bool | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.problem = problem

    @property
    def code(self) -> str:
        """The problem type's last part ("badCSR", "alreadyRevoked", "http-404")."""
        return self.problem.code

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def detail(self) -> str:
        return self.problem.detail

    @property
    def status(self) -> int | None:
        return self.problem.status

    @property
    def identifier(self) -> str | None:
        return self.problem.identifier

    @property
    def subproblems(self) -> tuple[Subproblem, ...]:
        return self.problem.subproblems


class AccountGone(CertmanError):
    """The server answered accountDoesNotExist; the account layer re-registers (internal)."""


class AccountUnknown(IssuanceError):
    """The server does not know the account and certman did not (or could not) re-register."""


class ServerBusy(AcmeProblem, IssuanceError):
    """rateLimited, 5xx and the like: the server asked for a pause (retryable).

    ``rate_limited``: the pause is about this request's account or names (RFC 8555 section
    6.6), not the whole server; an overloaded or maintained server answers 5xx instead.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: Problem,
        retry_after: datetime | None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message, problem=problem, retryable=True, retry_after=retry_after)
        self.rate_limited = rate_limited


class PolicyRefusal(AcmeProblem, PolicyError):
    """The CA's policy refuses an identifier (rejectedIdentifier, caa, ...): exit 2."""


class BindingRequired(AcmeProblem, ConfigError):
    """The server requires External Account Binding and none was configured: exit 2."""


class ProblemError(AcmeProblem, IssuanceError):
    """Any other refusal by the server: permanent."""

    def __init__(self, message: str, *, problem: Problem) -> None:
        super().__init__(message, problem=problem, retryable=False)


def retry_after_from(value: str | None, now: datetime) -> datetime | None:
    """Parse an HTTP Retry-After header (RFC 9110 section 10.2.3): seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(now, when.replace(microsecond=0))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    when = retry_after_from(value, now)
    return None if when is None else max(0.0, (when - now).total_seconds())


def translate(error: BaseException, where: Where, action: str) -> CertmanError:
    """One certman error for any exception raised while ``action`` talked to the server."""
    if isinstance(error, CertmanError):
        return error
    now = where.now()
    if isinstance(error, messages.Error):
        return _from_problem(error, where, action, now)
    if isinstance(error, requests.exceptions.SSLError):
        return ConfigError(
            f"TLS to the ACME server {where.directory} failed while {action}: the server's "
            f"certificate is not trusted ({_short(error)}). If it uses a private CA, set "
            f"ca_bundle in {where.table} to that CA's PEM file."
        )
    if isinstance(error, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        return IssuanceError(
            f"The ACME server {where.directory} is unreachable while {action} "
            f"({_short(error)}); check directory in {where.table} and the network. "
            "certman will retry.",
            retryable=True,
        )
    if isinstance(error, requests.exceptions.RequestException):
        return IssuanceError(
            f"Talking to the ACME server {where.directory} failed while {action}: {_short(error)}.",
            retryable=True,
        )
    if isinstance(error, acme_errors.ClientError):
        status, retry_after = _response_facts(error, now)
        bare = Problem(type=ABOUT_BLANK, status=status)
        if status is not None and status >= 500:
            return ServerBusy(
                f"The ACME server {where.directory} answered HTTP {status} while {action}; "
                "certman will retry later.",
                problem=bare,
                retry_after=retry_after,
            )
        detail = f"HTTP {status}" if status is not None else _short(error)
        return ProblemError(
            f"The ACME server {where.directory} sent an unexpected answer while {action} "
            f"({detail}); is directory in {where.table} an ACME directory URL?",
            problem=bare,
        )
    if isinstance(error, josepy.errors.Error | ValueError | KeyError):
        return IssuanceError(
            f"The ACME server {where.directory} sent a malformed answer while {action} "
            f"({type(error).__name__}: {_short(error)}); is directory in {where.table} "
            "an ACME directory URL?"
        )
    if isinstance(error, acme_errors.Error):
        return IssuanceError(f"ACME failed while {action}: {_short(error)}.")
    raise error


def directory_problem(error: BaseException, where: Where) -> CertmanError:
    """Reading the directory failed: unreachable, untrusted or busy servers as anywhere else;
    any other answer means the URL is not an ACME directory (RFC 8555 section 7.1.1)."""
    found = translate(error, where, "reading the directory")
    if found.retryable or isinstance(found, ConfigError):
        return found
    return ConfigError(
        f"{where.directory} is not an ACME directory ({_directory_detail(error, where)}); set "
        f"issuers.{where.issuer}.directory in {where.config_path} to the ACME server's "
        "directory URL."
    )


def _directory_detail(error: BaseException, where: Where) -> str:
    if isinstance(error, messages.Error):
        return f"it answered the problem {problem_of(error).describe()}"
    status, _ = _response_facts(error, where.now())
    if status is not None:
        return f"it answered HTTP {status}"
    if isinstance(error, KeyError) and error.args:
        return f"its answer has no {error.args[0]} URL"
    if isinstance(error, acme_errors.ClientError):
        return f"its answer is not JSON: {_short(error)}"
    return "its answer is not an ACME directory object"


def _from_problem(error: messages.Error, where: Where, action: str, now: datetime) -> CertmanError:
    problem = problem_of(error)
    code = problem.code
    retry_after = retry_after_from(getattr(error, "retry_after_header", None), now)
    described = problem.describe()
    if code == "accountDoesNotExist":
        return AccountGone(described)
    if code in RETRYABLE_PROBLEMS or (problem.status is not None and problem.status >= 500):
        if code == "rateLimited" and retry_after is None:
            retry_after = now + DEFAULT_RATE_LIMIT_BACKOFF
        return ServerBusy(
            f"The ACME server {where.directory} asked certman to try again later while "
            f"{action} ({described}).",
            problem=problem,
            retry_after=retry_after,
            rate_limited=code == "rateLimited",
        )
    if code in POLICY_PROBLEMS:
        return PolicyRefusal(
            f"The ACME server {where.directory} refused the request while {action}: "
            f"{described}. Remove or change that name.",
            problem=problem,
        )
    if code in {"externalAccountRequired"}:
        return BindingRequired(
            f"The ACME server {where.directory} requires External Account Binding "
            f"({described}); set eab_kid and eab_hmac_env in {where.table}.",
            problem=problem,
        )
    return ProblemError(
        f"The ACME server refused the request while {action}: {described}.", problem=problem
    )


def _response_facts(error: BaseException, now: datetime) -> tuple[int | None, datetime | None]:
    for arg in error.args:
        response = arg[0] if isinstance(arg, tuple) and arg else arg
        if isinstance(response, requests.Response):
            return response.status_code, retry_after_from(response.headers.get("Retry-After"), now)
    return None, None


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    # requests nests urllib3's reasons; the innermost one is the readable part.
    reason = getattr(error, "args", (None,))[0]
    inner = getattr(reason, "reason", None)
    if inner is not None:
        text = str(inner)
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def translated(where: Where, action: str) -> Iterator[None]:
    """Run a block that talks ACME; anything it raises leaves as a certman error."""
    try:
        yield
    except CertmanError:
        raise
    except Exception as error:  # every third-party failure is translated, bugs included
        raise translate(error, where, action) from error
