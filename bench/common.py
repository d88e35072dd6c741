"""Shared helpers for the benchmarks: fresh homes, timing, Markdown tables."""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime


def fresh_runtime(prefix: str = "certman-bench-") -> Runtime:
    home = Path(tempfile.mkdtemp(prefix=prefix)) / "home"
    config = load_config(home, home / "certman.toml")
    init_home(config, ca_key_type=None)
    return Runtime(config=config)


def discard(rt: Runtime) -> None:
    """Close ``rt``'s database and remove the temporary home fresh_runtime made for it."""
    rt.engine.dispose()
    shutil.rmtree(rt.config.home.parent, ignore_errors=True)


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
