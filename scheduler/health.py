"""/healthz and /metrics over HTTP on [service] listen (stdlib server, own thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from certman.scheduler.metrics import Metrics
from prometheus_client import CONTENT_TYPE_LATEST

from certman.errors import ConfigError

STALE_INTERVALS = 3


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"[service] listen {listen!r} is not host:port (e.g. 127.0.0.1:9464).")
    return host.strip("[]"), int(port)


class HealthServer:
    """200 on /healthz while the service shows signs of life within 3 intervals, 503 after.

    ``alive`` returns when the service last finished a tick or a certificate (Unix time),
    so a long tick working through a backlog stays healthy and a stuck one does not. An
    "interval" here is ``interval + jitter``: ticks may legitimately be that far apart.
    """

    def __init__(
        self,
        listen: str,
        metrics: Metrics,
        interval: float,
        alive: Callable[[], float | None],
        jitter: float = 0.0,
    ) -> None:
        host, port = parse_listen(listen)
        self.metrics, self.alive = metrics, alive
        self.interval = interval + jitter  # the longest normal gap between two ticks
        try:
            self.server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as e:
            raise ConfigError(
                f"Cannot listen on {listen} ([service] listen): {e.strerror}; pick a free port."
            ) from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="certman-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def healthy(self) -> tuple[bool, str]:
        last = self.alive()
        if last is None:
            return False, "no tick finished yet"
        age = time.time() - last
        if age > STALE_INTERVALS * self.interval:
            return False, f"last tick {age:.0f}s ago (more than {STALE_INTERVALS} intervals)"
        return True, f"last tick {age:.0f}s ago"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok, message = outer.healthy()
                    self._send(200 if ok else 503, "text/plain", (message + "\n").encode())
                elif path == "/metrics":
                    # streamed: no Content-Length, the end of the HTTP/1.0 response ends it
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.end_headers()
                    outer.metrics.write(self.wfile.write)
                else:
                    self._send(404, "text/plain", b"not found; try /healthz or /metrics\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would flood the log

        return Handler
