"""HTTP-01 (RFC 8555 section 8.3): certman's own small server, or files in a webroot."""

from __future__ import annotations

import errno
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from certman.acme_client.solvers.contract import ChallengeRequest

from certman.errors import IssuanceError

log = logging.getLogger("certman.acme")

PREFIX = "/.well-known/acme-challenge/"
# RFC 8555 section 8.3: the token is base64url; anything else must never reach a path.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _checked(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise IssuanceError(f"The ACME server sent a malformed challenge token {token[:40]!r}.")
    return token


class _Listener:
    """One HTTP server on one address, shared by the orders running at the same time."""

    def __init__(self, host: str, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.users = 0
        tokens = self.tokens

        class Handler(BaseHTTPRequestHandler):
            server_version = "certman"

            def do_GET(self) -> None:
                token = self.path.split("?", 1)[0].removeprefix(PREFIX)
                body = tokens.get(token) if self.path.startswith(PREFIX) else None
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http-01 %s", format % args)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class StandaloneSolver:
    """Serves tokens from its own server, started for an order and stopped after it.

    Orders running at the same time share one listener on the address; the last one to
    finish stops it, so nothing listens once no order is in flight.
    """

    kind = "http-01"
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _listeners: ClassVar[dict[tuple[str, int], _Listener]] = {}

    def __init__(self, *, host: str, port: int, setting: str) -> None:
        self.host = host
        self.port = port
        self.setting = setting  # where the address is configured, for error messages
        self._held: dict[int, bool] = {}

    def perform(self, requests: list[ChallengeRequest]) -> None:
        key = (self.host, self.port)
        with self._lock:
            listener = self._listeners.get(key)
            if listener is None:
                listener = self._start()
                self._listeners[key] = listener
            listener.users += 1
            self._held[id(requests)] = True
            for request in requests:
                listener.tokens[_checked(request.token)] = request.key_authorization

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        key = (self.host, self.port)
        with self._lock:
            if not self._held.pop(id(requests), False):
                return
            listener = self._listeners[key]
            for request in requests:
                listener.tokens.pop(request.token, None)
            listener.users -= 1
            if listener.users == 0:
                del self._listeners[key]
                listener.close()

    def check(self) -> str:
        """Can the listener start? (certman issuer check, and before any key is generated.)"""
        with self._lock:
            if (self.host, self.port) in self._listeners:
                return f"certman's own HTTP-01 server is listening on {self.address}"
            self._start().close()
        return f"{self.address} is free for certman's HTTP-01 server"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _start(self) -> _Listener:
        try:
            return _Listener(self.host, self.port)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                # Retryable: the other program may be gone by the next attempt, and the
                # order (persisted) is resumed then.
                raise IssuanceError(
                    f"Port {self.address} is already in use by another program, so certman "
                    f"cannot answer HTTP-01 there; stop that program, or set http_address or "
                    f'http_mode = "webroot" in {self.setting}.',
                    retryable=True,
                ) from None
            if e.errno == errno.EACCES:
                raise IssuanceError(
                    f"certman may not listen on {self.address} (permission denied; ports "
                    f"below 1024 need root or CAP_NET_BIND_SERVICE); change http_address in "
                    f"{self.setting}."
                ) from None
            raise IssuanceError(
                f"certman cannot listen on {self.address} for HTTP-01: {e.strerror}; check "
                f"http_address in {self.setting}."
            ) from None


class WebrootSolver:
    """Writes each token under WEBROOT/.well-known/acme-challenge/ for a running web server."""

    kind = "http-01"

    def __init__(self, *, webroot: Path, setting: str) -> None:
        self.webroot = webroot
        self.setting = setting
        self.directory = webroot / ".well-known" / "acme-challenge"

    def perform(self, requests: list[ChallengeRequest]) -> None:
        self._require_webroot()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
            for request in requests:
                path = self.directory / _checked(request.token)
                path.write_text(request.key_authorization)
                path.chmod(0o644)  # the web server must read it; it is public by design
        except OSError as e:
            raise IssuanceError(
                f"certman cannot write the HTTP-01 token under {self.directory}: {e.strerror}; "
                f"check webroot in {self.setting}."
            ) from None

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        for request in requests:
            if _TOKEN.fullmatch(request.token):
                (self.directory / request.token).unlink(missing_ok=True)
        # Leave no trace: remove the folders too when certman's files were all they held.
        for folder in (self.directory, self.directory.parent):
            try:
                folder.rmdir()
            except OSError:
                break

    def check(self) -> str:
        self._require_webroot()
        return f"webroot {self.webroot} exists"

    def _require_webroot(self) -> None:
        if not self.webroot.is_dir():
            raise IssuanceError(
                f"The webroot {self.webroot} does not exist; create it (the folder your web "
                f"server serves for this name) or fix webroot in {self.setting}."
            )
