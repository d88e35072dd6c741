"""Durations as operators write them: ``90d``, ``12h``, ``30m``, ``45s``, ``2w``, ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

from certman.errors import ValidationError

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"^(?:\d+[wdhms])+$")


def parse_duration(text: str, *, field: str = "duration", allow_zero: bool = False) -> timedelta:
    """Parse ``text`` into a timedelta; ``field`` names the option in the error message."""
    value = str(text).strip().lower()
    if value.startswith("-") and _WHOLE.match(value[1:]):
        raise ValidationError(f"{field} must be longer than zero (got {text!r}).")
    if not _WHOLE.match(value):
        raise ValidationError(
            f"{field} {text!r} is not a duration; write a number with a unit, "
            "for example 90d, 12h, 30m or 45s."
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds == 0 and not allow_zero:
        raise ValidationError(f"{field} must be longer than zero (got {text!r}).")
    return timedelta(seconds=seconds)


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
