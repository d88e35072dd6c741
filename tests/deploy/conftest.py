"""Fixtures for rollouts: real nginx servers serving the files `file` targets write."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.components.nginx import NGINX, Nginx, start_nginx


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[[], Nginx]]:
    """Starts one more nginx per call (each with its own files and port); stops them all."""
    if not shutil.which("nginx") and not Path(NGINX).exists():
        pytest.fail("nginx is not installed; scripts/test.sh installs it (apt-get install nginx)")
    started: list[Nginx] = []

    def start() -> Nginx:
        started.append(start_nginx(tmp_path / f"nginx{len(started)}"))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nginx(nginx_factory: Callable[[], Nginx]) -> Nginx:
    return nginx_factory()
