"""AWS errors moto cannot produce (AccessDenied, throttling, a disabled key), injected on the wire.

A ``before-send`` handler answers the request itself with the error response AWS would
send, so botocore parses it, retries it and raises it exactly as it would from AWS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class Fault:
    """Answers ``operation`` with ``code`` the first ``times`` calls (None: always).

    ``bare``: no body at all, as S3 answers a HEAD (botocore then names the error by
    its HTTP status).
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        code: str,
        *,
        status: int = 400,
        times: int | None = None,
        bare: bool = False,
    ) -> None:
        self.code, self.status, self.times, self.bare = code, status, times, bare
        self.calls = 0
        self.protocol = client.meta.service_model.protocol
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}.{operation}", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse | None:
        self.calls += 1
        if self.times is not None and self.calls > self.times:
            return None
        if self.bare:
            return AWSResponse(request.url, self.status, {}, _Raw(b""))
        if self.protocol in ("json", "rest-json"):
            body = json.dumps({"__type": self.code, "message": f"injected {self.code}"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": self.code}
        else:
            body = (
                f"<Error><Code>{self.code}</Code><Message>injected {self.code}</Message></Error>"
            ).encode()
            headers = {"Content-Type": "application/xml"}
        return AWSResponse(request.url, self.status, headers, _Raw(body))
