"""Service fixtures: a runtime on an initialised home with a clock that only moves when told."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certman.clock import FrozenClock
from certman.config import load_config
from certman.service.runtime import Runtime


@pytest.fixture
def clock() -> FrozenClock:
    # The home's CAs were created at the real time; start there so every leaf fits under them.
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
def frozen_runtime(initialised_home: Path, clock: FrozenClock) -> Iterator[Runtime]:
    rt = Runtime(
        config=load_config(initialised_home, initialised_home / "certman.toml"), clock=clock
    )
    yield rt
    rt.engine.dispose()
