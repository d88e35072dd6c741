"""Durations as operators write them: ``90d``, ``12h``, ``30m``, ``45s``, ``2w``, ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

from certman.errors import ValidationError

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# ASCII digits only: \d would also take full-width and other Unicode digits (U+FF19 U+FF10 d).
_PART = re.compile(r"([0-9]+)([wdhms])")
_WHOLE = re.compile(r"(?:[0-9]+[wdhms])+")
# No setting, certificate or window needs more than a century; far past it a date plus the
# duration overflows the date type (year 9999).
MAX_DURATION = timedelta(days=36525)


def parse_duration(text: str, *, field: str = "duration", allow_zero: bool = False) -> timedelta:
    """Parse ``text`` into a timedelta; ``field`` names the option in the error message."""
    value = str(text).strip().lower()
    if value.startswith("-") and _WHOLE.fullmatch(value[1:]):
        raise ValidationError(f"{field} must be longer than zero (got {text!r}).")
    if not _WHOLE.fullmatch(value):
        raise ValidationError(
            f"{field} {text!r} is not a duration; write a number with a unit, "
            "for example 90d, 12h, 30m or 45s."
        )
    # Leading zeros cannot make a number longer than this without it being over the maximum;
    # the check keeps int() away from thousands of digits.
    parts = [(n.lstrip("0") or "0", u) for n, u in _PART.findall(value)]
    if any(len(n) > 12 for n, _ in parts):
        raise _too_long(field, text)
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds == 0 and not allow_zero:
        raise ValidationError(f"{field} must be longer than zero (got {text!r}).")
    if seconds > MAX_DURATION.total_seconds():
        raise _too_long(field, text)
    return timedelta(seconds=seconds)


def _too_long(field: str, text: str) -> ValidationError:
    return ValidationError(
        f"{field} {text!r} is longer than certman accepts; give at most "
        f"{MAX_DURATION.days}d (100 years)."
    )


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the units parse_duration accepts."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts)
