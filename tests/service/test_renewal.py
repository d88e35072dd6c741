"""When to renew (a pure function of the certificate and policy) and how to back off."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from certman.service.renewal import (
    BACKOFF_MAX,
    BACKOFF_START,
    next_attempt_at,
    renewal_due_at,
)

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = NOT_BEFORE + timedelta(days=90)
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_renewal_is_due_renew_before_ahead_of_expiry() -> None:
    due = renewal_due_at(
        not_before=NOT_BEFORE, not_after=NOT_AFTER, renew_before=timedelta(days=30)
    )
    assert due == NOT_AFTER - timedelta(days=30)


def test_renewal_is_due_two_thirds_into_the_lifetime_by_default() -> None:
    due = renewal_due_at(not_before=NOT_BEFORE, not_after=NOT_AFTER, renew_before=None)
    assert due == NOT_BEFORE + timedelta(days=60)


def test_renewal_time_is_truncated_to_whole_seconds() -> None:
    not_after = NOT_BEFORE + timedelta(seconds=100)  # 2/3 of it is 66.67 s
    due = renewal_due_at(not_before=NOT_BEFORE, not_after=not_after, renew_before=None)
    assert due == NOT_BEFORE + timedelta(seconds=66)
    assert due.microsecond == 0


def test_renewal_time_truncates_microseconds_of_the_certificate_times() -> None:
    due = renewal_due_at(
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER + timedelta(microseconds=900),
        renew_before=timedelta(days=1),
    )
    assert due.microsecond == 0


@pytest.mark.parametrize("renew_before", [timedelta(days=90), timedelta(days=120)])
def test_renew_before_as_long_as_the_lifetime_falls_back_to_two_thirds(
    renew_before: timedelta,
) -> None:
    due = renewal_due_at(not_before=NOT_BEFORE, not_after=NOT_AFTER, renew_before=renew_before)
    assert due == NOT_BEFORE + timedelta(days=60)


def test_renewal_time_is_a_pure_function() -> None:
    args = {"not_before": NOT_BEFORE, "not_after": NOT_AFTER, "renew_before": timedelta(days=7)}
    assert renewal_due_at(**args) == renewal_due_at(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5])
def test_back_off_doubles_with_each_failure_plus_at_most_ten_percent_jitter(
    failures: int,
) -> None:
    base = BACKOFF_START * 2 ** (failures - 1)
    for seed in range(20):
        when = next_attempt_at(now=NOW, failures=failures, rng=random.Random(seed))
        assert NOW + base <= when <= NOW + base * 1.1


def test_back_off_is_capped_with_its_jitter_below_the_cap() -> None:
    for failures in (6, 7, 10, 50, 1000):
        when = next_attempt_at(now=NOW, failures=failures, rng=random.Random(1))
        assert NOW + BACKOFF_MAX * 0.9 <= when <= NOW + BACKOFF_MAX


def test_back_off_starts_at_one_hour_and_caps_at_thirty_two() -> None:
    assert timedelta(hours=1) == BACKOFF_START
    assert timedelta(hours=32) == BACKOFF_MAX


def test_back_off_with_no_failures_counts_as_the_first() -> None:
    when = next_attempt_at(now=NOW, failures=0, rng=random.Random(3))
    assert NOW + BACKOFF_START <= when <= NOW + BACKOFF_START * 1.1


def test_back_off_with_the_same_seed_gives_the_same_time() -> None:
    first = next_attempt_at(now=NOW, failures=3, rng=random.Random(42))
    again = next_attempt_at(now=NOW, failures=3, rng=random.Random(42))
    assert first == again


def test_back_off_jitter_spreads_attempts() -> None:
    times = {next_attempt_at(now=NOW, failures=3, rng=random.Random(seed)) for seed in range(20)}
    assert len(times) > 1


def test_back_off_honours_a_later_retry_after() -> None:
    retry_after = NOW + timedelta(hours=5)
    assert next_attempt_at(now=NOW, failures=1, retry_after=retry_after) == retry_after


def test_back_off_ignores_an_earlier_retry_after() -> None:
    when = next_attempt_at(
        now=NOW, failures=2, retry_after=NOW + timedelta(minutes=5), rng=random.Random(0)
    )
    assert when >= NOW + timedelta(hours=2)


def test_back_off_times_are_whole_seconds() -> None:
    assert next_attempt_at(now=NOW, failures=3, rng=random.Random(7)).microsecond == 0
