"""The system clock: aware UTC, whole seconds, and it moves with the system's time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certman import clock as clock_module
from certman.clock import SystemClock


def test_now_is_aware_utc_in_whole_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module.time, "time", lambda: 1_800_000_000.75)
    now = SystemClock().now()
    assert now == datetime.fromtimestamp(1_800_000_000, UTC)
    assert now.tzinfo is UTC and now.microsecond == 0


def test_now_follows_the_system_time_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter([100.1, 100.9, 101.0, 99.5])
    monkeypatch.setattr(clock_module.time, "time", lambda: next(times))
    clock = SystemClock()
    seen = [clock.now() for _ in range(4)]
    assert [int(t.timestamp()) for t in seen] == [100, 100, 101, 99]
