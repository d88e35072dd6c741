"""An ARI-capable ACME server for tests: an HTTPS proxy in front of Pebble that adds renewalInfo.

Pebble 2.4 has no RFC 9773 support and no profiles. This proxy forwards every request to
Pebble unchanged (with the Host header kept, so Pebble's URLs and JWS ``url`` checks name the
proxy), adds ``renewalInfo`` (and, when set, ``meta.profiles``) to the directory, answers
``GET /renewal-info/{certID}`` itself, and records what clients sent (renewalInfo paths,
newOrder payloads) so tests can check the wire format.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.components.pebble import Pebble

_FORWARDED_HEADERS = ("Content-Type", "Accept")
_RETURNED_HEADERS = ("Content-Type", "Replay-Nonce", "Location", "Link", "Retry-After")


@dataclass
class Window:
    start: datetime
    end: datetime
    retry_after: int = 3600
    explanation_url: str | None = None


@dataclass(frozen=True)
class Canned:
    """One answer the proxy gives instead of forwarding (e.g. a rateLimited problem)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AriLog:
    renewal_info_paths: list[str] = field(default_factory=list)
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)  # orders the CA issued a certificate for


class AriServer:
    """Serves https://127.0.0.1:PORT/dir as Pebble plus RFC 9773 renewalInfo."""

    def __init__(self, pebble: Pebble, port: int) -> None:
        self.pebble = pebble
        self.port = port
        self.window: Window | None = None
        # draft-aaron-acme-profiles: what the directory's meta.profiles offers (name -> text)
        self.profiles: dict[str, str] = {}
        self.log = AriLog()
        self.canned: dict[str, Canned] = {}  # path suffix -> the next answer there (once)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> AriServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_HEAD(self) -> None:
                proxy._handle(self, "HEAD")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pebble.tls.cert_pem), str(self.pebble.tls.key_pem))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- handling ---------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if method == "GET" and request.path.startswith("/renewal-info/"):
            self._renewal_info(request)
            return
        for suffix, canned in list(self.canned.items()):
            if method == "POST" and request.path.endswith(suffix):
                del self.canned[suffix]
                headers = {"Content-Type": "application/problem+json", **canned.headers}
                headers["Replay-Nonce"] = self._fresh_nonce()
                self._send(request, canned.status, headers, json.dumps(canned.body).encode())
                return
        status, headers, answer = self._forward(request, method, body)
        if method == "POST" and request.path.endswith("/order-plz") and status == 201:
            # only orders the server created: a badNonce retry is not a second order
            self.log.new_orders.append(_jws_payload(body))
        if method == "POST" and "/finalize-order/" in request.path and status == 200:
            self.log.finalized.append(request.path)
        if method == "GET" and request.path == "/dir" and status == 200:
            directory = json.loads(answer)
            directory["renewalInfo"] = f"https://127.0.0.1:{self.port}/renewal-info"
            if self.profiles:
                directory.setdefault("meta", {})["profiles"] = dict(self.profiles)
            answer = json.dumps(directory).encode()
        self._send(request, status, headers, answer)

    def _renewal_info(self, request: BaseHTTPRequestHandler) -> None:
        cert_id = request.path.removeprefix("/renewal-info/")
        self.log.renewal_info_paths.append(cert_id)
        window = self.window
        if window is None:
            self._send(request, 404, {"Content-Type": "application/problem+json"}, b"{}")
            return
        doc: dict[str, Any] = {
            "suggestedWindow": {
                "start": window.start.isoformat().replace("+00:00", "Z"),
                "end": window.end.isoformat().replace("+00:00", "Z"),
            }
        }
        if window.explanation_url:
            doc["explanationURL"] = window.explanation_url
        headers = {"Content-Type": "application/json", "Retry-After": str(window.retry_after)}
        self._send(request, 200, headers, json.dumps(doc).encode())

    def _fresh_nonce(self) -> str:
        context = ssl.create_default_context(cafile=str(self.pebble.ca_bundle))
        connection = http.client.HTTPSConnection("127.0.0.1", self.pebble.port, context=context)
        try:
            connection.request("HEAD", "/nonce-plz", headers={"Host": f"127.0.0.1:{self.port}"})
            response = connection.getresponse()
            response.read()
            return str(response.getheader("Replay-Nonce"))
        finally:
            connection.close()

    def _forward(
        self, request: BaseHTTPRequestHandler, method: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.pebble.ca_bundle))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.pebble.port, context=context, timeout=30
        )
        headers = {k: v for k in _FORWARDED_HEADERS if (v := request.headers.get(k))}
        headers["Host"] = f"127.0.0.1:{self.port}"  # Pebble builds its URLs from Host
        try:
            connection.request(method, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = {k: v for k in _RETURNED_HEADERS if (v := response.getheader(k))}
            links = response.msg.get_all("Link") or []
            if links:
                kept["Link"] = ", ".join(links)
            return response.status, kept, answer
        finally:
            connection.close()

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)


def _jws_payload(body: bytes) -> dict[str, Any]:
    payload = json.loads(body)["payload"]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    result = json.loads(decoded)
    assert isinstance(result, dict)
    return result
