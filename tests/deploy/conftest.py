"""Fixtures for rollouts: a real nginx serving the files a `file` target writes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.nginx import NGINX, Nginx, free_port, write_placeholder


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    if not shutil.which("nginx") and not Path(NGINX).exists():
        pytest.fail("nginx is not installed; scripts/test.sh installs it (apt-get install nginx)")
    tls = tmp_path / "tls"
    tls.mkdir()
    server = Nginx(
        prefix=tmp_path / "nginx",
        port=free_port(),
        fullchain=tls / "fullchain.pem",
        key=tls / "privkey.pem",
    )
    server.prefix.mkdir()
    write_placeholder(server.fullchain, server.key)
    server.start()
    yield server
    server.stop()
