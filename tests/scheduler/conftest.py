"""Fixtures for the service: a webhook receiver, runtimes on a frozen clock, PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from certman.clock import Clock, FrozenClock
from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.cli.conftest import cli_clock, fake_issuers  # noqa: F401  (shared fixtures)
from tests.components.postgres import PostgresCluster, postgres_available, postgres_cluster
from tests.components.required import missing_component


class Webhook:
    """A local HTTP endpoint that records every JSON body POSTed to it (and accepted).

    ``fail``: answer 500; ``hang``: answer only after that many seconds (a client with a
    shorter timeout gives up first). ``attempts`` counts every POST, accepted or not, and
    ``first_at`` is when the first one arrived (time.monotonic()).
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = False
        self.hang = 0.0
        self.attempts = 0
        self.first_at: float | None = None
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                if outer.first_at is None:
                    outer.first_at = time.monotonic()
                if outer.hang:
                    outer._release.wait(outer.hang)
                    return  # no answer: the client has given up
                status = 500 if outer.fail else 200
                if not outer.fail:
                    outer.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["detail-type"] == detail_type]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def make_home(home: Path, extra: str = "") -> Path:
    home.mkdir(parents=True, mode=0o700)
    (home / "certman.toml").write_text(extra)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    return home


def runtime_for(home: Path, clock: Clock) -> Runtime:
    rt = Runtime(config=load_config(home, home / "certman.toml"), clock=clock)
    rt.registry.issuers.setdefault("fake", "tests.service.fakes:build")
    return rt


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (scripts/apt-install.sh postgresql)."""
    if not postgres_available():
        missing_component("PostgreSQL 15 is not installed (scripts/apt-install.sh postgresql)")
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the session's cluster."""
    return pg_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
