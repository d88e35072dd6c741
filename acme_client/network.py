"""acme's ClientNetwork with badNonce retried several times and problems keeping HTTP facts."""

from __future__ import annotations

import logging
from typing import Any

import requests
from acme import client as acme_client
from acme import messages

log = logging.getLogger("certman.acme")

# RFC 8555 section 6.5: a server may reject any nonce; the client retries with the fresh one
# the error carries. acme retries once; Pebble rejects 5 % by default, so one retry fails
# runs of many requests. Ten consecutive rejections at 10 % happen once in 10^10 requests.
NONCE_ATTEMPTS = 10
NETWORK_TIMEOUT = 30


class Network(acme_client.ClientNetwork):
    """Signs and sends requests; retries badNonce; records status and Retry-After on problems."""

    def __init__(self, *, verify: str | bool, user_agent: str) -> None:
        super().__init__(key=None, user_agent=user_agent, timeout=NETWORK_TIMEOUT)
        # requests takes a CA bundle path where acme's signature says bool.
        self.verify_ssl = verify  # type: ignore[assignment]

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, NONCE_ATTEMPTS + 1):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce" or attempt == NONCE_ATTEMPTS:
                    raise
                log.debug("badNonce (attempt %d of %d); retrying", attempt, NONCE_ATTEMPTS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_response(  # type: ignore[override]
        self, response: requests.Response, content_type: str | None = None
    ) -> requests.Response:
        try:
            return super()._check_response(response, content_type=content_type)
        except messages.Error as error:
            # Keep what the problem document does not say: the HTTP status (5xx are
            # retryable) and Retry-After (RFC 8555 section 6.6, rate limits).
            error.http_status = response.status_code
            error.retry_after_header = response.headers.get("Retry-After")
            # RFC 8555 section 6.5: error responses carry a fresh nonce too; keep it so the
            # retry after badNonce needs no extra newNonce round trip.
            if self.REPLAY_NONCE_HEADER in response.headers:
                try:
                    self._add_nonce(response)
                except Exception:  # a malformed nonce on an error answer is not our problem
                    log.debug("ignoring a malformed nonce on an error answer")
            raise
