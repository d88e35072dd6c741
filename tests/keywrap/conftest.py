"""Fixtures for key wrapper tests: a master key file under a temporary home."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from certman.clock import FrozenClock
from certman.keywrap import LocalMasterKey
from certman.models import EncryptionContext


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2025, 1, 1, tzinfo=UTC))


@pytest.fixture
def master_key_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "master-key.json"


@pytest.fixture
def master_key(master_key_path: Path, clock: FrozenClock) -> LocalMasterKey:
    return LocalMasterKey.create(master_key_path, clock=clock)


@pytest.fixture
def context() -> EncryptionContext:
    return EncryptionContext(certificate="www.example.test", revision=3, purpose="private-key")
