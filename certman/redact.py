"""Redaction of secrets in URLs and text before anything is printed, logged or raised.

A database URL carries its password (``postgresql+psycopg://user:PASSWORD@host/db``); a
webhook URL carries its token in the path or the query (``https://hooks.example/T0/B1/XYZ``,
``...?token=XYZ``). Every message that names one of them goes through here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@ — the password part of any URL written into a text.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]*(?P<at>@)")
# password=... in a libpq connection string, as a driver may echo it.
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (the rest kept)."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing of it
        return MASK
    netloc = _netloc_without_password(parts.netloc)
    if netloc == parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=netloc))


def redact_webhook_url(url: str) -> str:
    """``url`` with its password and its whole path and query (where tokens live) masked."""
    if not url or "://" not in url:
        return MASK if url else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = _netloc_without_password(parts.netloc)
    hidden = bool(parts.path not in ("", "/") or parts.query or parts.fragment)
    return urlunsplit((parts.scheme, netloc, f"/{MASK}" if hidden else parts.path, "", ""))


def _netloc_without_password(netloc: str) -> str:
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return netloc
    user = userinfo.split(":", 1)[0]
    return f"{user}:{MASK}@{host}"


def url_secrets(url: str, *, webhook: bool = False) -> list[str]:
    """The secret parts of ``url``: its password, and for a webhook its path and query."""
    if not url or "://" not in url:
        return [url] if webhook and url else []
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return [url]
    found = [password] if password else []
    if webhook:
        tail = url[url.index(parts.netloc) + len(parts.netloc) :] if parts.netloc else url
        found += [p for p in (tail, parts.path, parts.query) if p not in ("", "/")]
        found.append(url)
    return found


# The secret parts of the URLs in the loaded configuration. Process-wide on purpose: an
# exception raised deep in a driver reaches the CLI's error printer and the service's log
# handler without the configuration, and must still be scrubbed there.
_KNOWN: frozenset[str] = frozenset()
# A secret is masked where it stands on its own, not inside a longer word or path: a
# webhook path "/certman" hides ".../certman: refused" but leaves ".../certman.toml" alone.
_EDGE = r"[\w.~%+-]"


def _standalone(secret: str) -> str:
    """A pattern for ``secret`` not run into a longer word at an end that could continue one."""
    before = f"(?<!{_EDGE})" if re.match(_EDGE, secret[0]) else ""
    after = f"(?!{_EDGE})" if re.match(_EDGE, secret[-1]) else ""
    return f"{before}{re.escape(secret)}{after}"


def remember_secrets(values: Iterable[str]) -> None:
    """Mask ``values`` in every later :func:`scrub`; the configuration loaded last sets them."""
    global _KNOWN
    _KNOWN = frozenset(v for v in values if len(v) >= 3)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL password, conninfo password and each known secret masked.

    For messages built from third-party exceptions (SQLAlchemy and psycopg can echo the URL
    or the connection string they were given), where the URL is not at hand to redact.
    """
    known = _KNOWN.union(s for s in secrets if len(s) >= 3)
    if known:
        # Longest first, so a whole URL goes before the token inside it.
        alternatives = "|".join(_standalone(s) for s in sorted(known, key=len, reverse=True))
        text = re.sub(alternatives, MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _CONNINFO_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) pass through :func:`scrub`."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
