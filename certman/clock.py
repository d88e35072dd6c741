"""The injected clock: every notion of "now" in certman goes through one of these."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC, truncated to whole seconds."""
        ...


class SystemClock:
    def __init__(self) -> None:
        # (second, its datetime): the bulk path asks the time several times per
        # certificate, mostly within one second; one tuple, so a thread reads a whole pair.
        self._last = (0, datetime.fromtimestamp(0, UTC))

    def now(self) -> datetime:
        # Whole seconds since the epoch: datetime.now(UTC).replace(microsecond=0).
        second = int(time.time())
        last = self._last
        if last[0] == second:
            return last[1]
        value = datetime.fromtimestamp(second, UTC)
        self._last = (second, value)
        return value


class FrozenClock:
    """A clock that only moves when told to (tests, `certman simulate`)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware.")
        self._now = start.astimezone(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now = self._now + delta

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC).replace(microsecond=0)


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as aware UTC; naive values (as some databases return them) are UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
