"""Polling a resource until it settles: short exponential back-off, or the server's Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from certman.errors import IssuanceError

T = TypeVar("T")

# Pebble (and Boulder on a quiet day) settle within tens of milliseconds; the acme library
# sleeps a whole second per poll. Start small, double, cap: ~10 polls in the first 10 s.
FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def wait_for(
    fetch: Callable[[], T],
    *,
    settled: Callable[[T], bool],
    retry_after: Callable[[T], float | None],
    deadline: float,
    what: str,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Fetch until ``settled``; wait the server's Retry-After when it sends one
    (RFC 8555 section 7.5.1 and 7.4), else back off exponentially from 50 ms to 2 s.

    Past ``deadline`` (a ``monotonic`` time) raise a retryable IssuanceError: the resource
    is still there and a later attempt resumes it.
    """
    delay = FIRST_DELAY
    while True:
        value = fetch()
        if settled(value):
            return value
        wait = retry_after(value)
        wait = delay if wait is None else max(wait, FIRST_DELAY)
        remaining = deadline - monotonic()
        if remaining <= 0 or wait > remaining:
            raise IssuanceError(
                f"{what} did not finish in time; certman will resume it on the next attempt.",
                retryable=True,
                retry_after=now() + timedelta(seconds=int(wait) + 1) if now else None,
            )
        sleep(wait)
        delay = min(MAX_DELAY, delay * 2)
