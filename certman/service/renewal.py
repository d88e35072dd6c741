"""When to renew: a pure function of the certificate and the policy, and retry back-off."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

DEFAULT_FRACTION = 2 / 3
BACKOFF_START = timedelta(hours=1)
BACKOFF_MAX = timedelta(hours=32)


def renewal_due_at(
    *, not_before: datetime, not_after: datetime, renew_before: timedelta | None
) -> datetime:
    """``not_after - renew_before`` when that leaves a positive lifetime, else 2/3 into it.

    Like cert-manager's RenewalTime: a renew_before as long as the lifetime or longer
    would renew continuously, so it falls back to the default fraction. Truncated to
    whole seconds.
    """
    lifetime = not_after - not_before
    if renew_before is not None and timedelta(0) < renew_before < lifetime:
        due = not_after - renew_before
    else:
        due = not_before + timedelta(seconds=int(lifetime.total_seconds() * DEFAULT_FRACTION))
    return due.replace(microsecond=0)


def pick_renewal_time(
    window_start: datetime, window_end: datetime, *, rng: random.Random | None = None
) -> datetime:
    """RFC 9773 section 4.2: a uniformly random point in the CA's window, whole seconds.

    Random, so that the many clients of one CA do not all renew at the same instant.
    """
    span = max(0, int((window_end - window_start).total_seconds()))
    return (window_start + timedelta(seconds=(rng or random).randint(0, span))).replace(
        microsecond=0
    )


def next_attempt_at(
    *,
    now: datetime,
    failures: int,
    start: timedelta = BACKOFF_START,
    cap: timedelta = BACKOFF_MAX,
    retry_after: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Exponential back-off with jitter: start, 2x start, ... capped; never before Retry-After."""
    exponent = max(0, failures - 1)
    base = min(cap.total_seconds(), start.total_seconds() * (2 ** min(exponent, 30)))
    jitter = (rng or random).uniform(0, base * 0.1)
    when = now + timedelta(seconds=int(min(cap.total_seconds(), base + jitter)))
    if retry_after is not None and retry_after > when:
        when = retry_after
    return when
