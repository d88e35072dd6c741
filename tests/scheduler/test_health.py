"""/healthz: stale after 3 x (interval + jitter), the longest normal gap between ticks."""

from __future__ import annotations

import time

from certman.scheduler.health import HealthServer
from certman.scheduler.metrics import Metrics

from tests.scheduler.processes import get


def test_healthz_allows_three_intervals_plus_their_jitter() -> None:
    last_tick = [time.time() - 100]
    server = HealthServer(
        "127.0.0.1:0", Metrics(), interval=10, alive=lambda: last_tick[0], jitter=30
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        # 100 s without a tick: within 3 x (10 s + 30 s jitter) = 120 s
        assert get(url)[0] == 200
        last_tick[0] = time.time() - 125
        status, body = get(url)
        assert status == 503 and "more than 3 intervals" in body
    finally:
        server.stop()


def test_without_jitter_three_intervals_is_the_limit() -> None:
    server = HealthServer("127.0.0.1:0", Metrics(), interval=10, alive=lambda: time.time() - 35)
    try:
        ok, message = server.healthy()
        assert not ok and "more than 3 intervals" in message
    finally:
        server.server.server_close()
