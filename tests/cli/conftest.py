"""CLI fixtures: a clock the CLI's runtime uses, and the fake issuer type registered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from certman.cli.context import CliState
from certman.clock import FrozenClock
from certman.service.runtime import Runtime


@pytest.fixture
def cli_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    """Every runtime the CLI builds uses this clock and knows ``type = "fake"`` issuers."""
    clock = FrozenClock(datetime.now(UTC))
    original = CliState.runtime

    def runtime(self: CliState) -> Runtime:
        rt = original(self)
        rt.clock = clock
        rt.registry.issuers.setdefault("fake", "tests.service.fakes:build")
        return rt

    monkeypatch.setattr(CliState, "runtime", runtime)
    yield clock


@pytest.fixture
def fake_issuers(cli_clock: FrozenClock) -> None:
    """The CLI builds ``[issuers.NAME] type = "fake"`` issuers (tests/service/fakes.py)."""
