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


def lifetime_of(
    validity_seconds: int, not_before: datetime | None, not_after: datetime | None
) -> timedelta | None:
    """How long a certificate lives: the validity asked for, or what the issuer gave when
    that is shorter (an ACME CA decides). The issued span alone overstates: CAs backdate
    not_before (an hour, here and at Let's Encrypt) for clock skew."""
    asked = timedelta(seconds=validity_seconds) if validity_seconds > 0 else None
    given = not_after - not_before if not_after and not_before else None
    spans = [span for span in (asked, given) if span is not None]
    return min(spans) if spans else None


def first_retry(lifetime: timedelta | None, start: timedelta = BACKOFF_START) -> timedelta:
    """The first retry delay: ``start`` (1 h), or a tenth of the lifetime when that is shorter.

    cert-manager's 1 h -> 32 h assumes 90-day certificates; a 90-second one would lapse
    before its first retry.
    """
    if lifetime is None or lifetime <= timedelta(0):
        return start
    return min(start, lifetime / 10)


def next_attempt_at(
    *,
    now: datetime,
    failures: int,
    start: timedelta = BACKOFF_START,
    cap: timedelta = BACKOFF_MAX,
    retry_after: datetime | None = None,
    rng: random.Random | None = None,
    lifetime: timedelta | None = None,
    not_after: datetime | None = None,
) -> datetime:
    """Exponential back-off with jitter, capped; never before Retry-After.

    The delay starts at ``first_retry(lifetime, start)`` and doubles, plus up to 10 %
    jitter. At the cap the jitter goes below it (90-100 % of ``cap``), so what one outage
    hit does not retry in lockstep. With ``not_after`` the attempt is never later than
    the expiry less one first-retry delay: a certificate keeps being retried before it
    lapses (once that moment has passed, every first-retry delay). Whole seconds.
    """
    uniform = (rng or random).uniform
    step = first_retry(lifetime, start).total_seconds()
    limit = cap.total_seconds()
    base = step * (2 ** min(max(0, failures - 1), 40))
    delay = base + uniform(0, base * 0.1)
    if delay > limit:
        delay = limit - uniform(0, limit * 0.1)
    when = now + timedelta(seconds=max(1, int(delay)))
    if not_after is not None:
        latest = max(not_after - timedelta(seconds=step), now + timedelta(seconds=step))
        when = min(when, latest)
    if retry_after is not None and retry_after > when:
        when = retry_after
    return when
