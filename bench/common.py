"""Shared helpers for the benchmarks: fresh homes, timing, Markdown tables."""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime


def fresh_runtime(prefix: str = "certman-bench-") -> Runtime:
    home = Path(tempfile.mkdtemp(prefix=prefix)) / "home"
    config = load_config(home, home / "certman.toml")
    init_home(config, ca_key_type=None)
    return Runtime(config=config)


_LEFT_HOMES: list[Path] = []


def discard(rt: Runtime) -> None:
    """Close ``rt``'s database; its temporary home is removed by ``remove_homes``.

    Not at once: removing a thousand files leaves the file system's journal busy, and the
    next round's flush of its own bundles would wait on it.
    """
    rt.engine.dispose()
    _LEFT_HOMES.append(rt.config.home.parent)


def remove_homes() -> None:
    """Remove the homes ``discard`` set aside (call it once the measuring is over)."""
    while _LEFT_HOMES:
        shutil.rmtree(_LEFT_HOMES.pop(), ignore_errors=True)


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """The fastest of ``runs`` timings: the least disturbed by a noisy machine."""
    return min(fn() for _ in range(runs))


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def timed(fn: Callable[[], object]) -> float:
    # Garbage the previous round left (a whole runtime) is collected before, not inside,
    # the next timed section, whichever path that is.
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def certificate_row(i: int, now: datetime, **columns: Any) -> dict[str, Any]:
    """The certificate table row of synthetic certificate ``i`` (an active EC leaf of the
    default CA), for benchmarks that fill the inventory with a plain INSERT."""
    return {
        "name": f"cert-{i:07d}",
        "source": "managed",
        "issuer": "default",
        "domains": f'["h{i}.example.com"]',
        "key_type": "ec-p256",
        "validity_seconds": 7776000,
        "reuse_key": False,
        "targets": "[]",
        "status": "active",
        "current_revision": 1,
        "latest_revision": 1,
        "failures": 0,
        "created_at": now,
        "updated_at": now,
        **columns,
    }
