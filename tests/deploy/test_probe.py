"""wait_for_serial against a scripted server on a fake clock: what counts as verified."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from certman.deploy import probe
from certman.deploy.probe import Endpoint, wait_for_serial

OLD, NEW = "01", "02"
ENDPOINT = Endpoint(host="127.0.0.1", port=443)


@dataclass
class FakeClock:
    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ScriptedServer:
    """Answers each handshake with ``script(t, n)`` (t: fake time, n: handshake number)."""

    clock: FakeClock
    script: Callable[[float, int], str]
    seen: list[tuple[float, str]] = field(default_factory=list)

    def handshake(self, endpoint: Endpoint, server_name: str | None, timeout: float) -> str:
        serial = self.script(self.clock.now, len(self.seen))
        self.seen.append((self.clock.now, serial))
        self.clock.now += 0.002  # a loopback handshake
        return serial


def run(
    monkeypatch: pytest.MonkeyPatch,
    script: Callable[[float, int], str],
    *,
    timeout: float = 10.0,
    settle: float = 1.0,
) -> tuple[bool, str, FakeClock, ScriptedServer]:
    clock = FakeClock()
    server = ScriptedServer(clock, script)
    monkeypatch.setattr(probe, "served_serial", server.handshake)
    ok, seen = wait_for_serial(
        ENDPOINT,
        "www.example.com",
        NEW,
        timeout=timeout,
        settle=settle,
        clock=lambda: clock.now,
        sleep=clock.sleep,
    )
    return ok, seen, clock, server


def reload_overlap(until: float) -> Callable[[float, int], str]:
    """Old and new workers both accept until ``until``, the new one three times in four."""
    return lambda t, n: (OLD if n % 4 == 3 else NEW) if t < until else NEW


def test_a_lucky_streak_inside_a_reload_overlap_is_not_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok, _, clock, server = run(monkeypatch, reload_overlap(until=0.5))
    assert ok
    # Verified only once the old workers were gone, and after at least settle seconds.
    assert clock.now > 0.5
    assert server.seen[0][1] == NEW, "the first three handshakes alone used to count"


def test_an_old_serial_restarts_the_settle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, _, clock, server = run(monkeypatch, lambda t, n: OLD if 0.7 <= t < 0.9 else NEW)
    assert ok
    last_old = max(t for t, serial in server.seen if serial == OLD)
    assert clock.now >= last_old + 1.0


def test_handshakes_are_spaced_so_they_do_not_all_fall_inside_one_overlap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, _, server = run(monkeypatch, lambda t, n: NEW)
    times = [t for t, _ in server.seen]
    assert len(times) >= 3
    assert all(later - earlier >= 0.2 for earlier, later in pairwise(times))


def test_a_server_that_never_settles_fails_with_what_it_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok, seen, clock, _ = run(monkeypatch, reload_overlap(until=1e9), timeout=3.0)
    assert not ok
    assert clock.now >= 3.0
    assert seen.startswith(("serial 01", "the new serial, for only"))


def test_without_a_settle_time_three_handshakes_in_a_row_still_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok, _, _, server = run(monkeypatch, lambda t, n: NEW, settle=0.0)
    assert ok and len(server.seen) == 3


def test_no_answer_at_all_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(t: float, n: int) -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    ok, seen, _, _ = run(monkeypatch, refused, timeout=1.0)
    assert not ok and seen.startswith("no TLS handshake")
