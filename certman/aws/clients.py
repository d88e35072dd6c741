"""boto3 clients, built once per runtime from [aws] and handed to the adapters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certman.errors import ConfigError


@dataclass
class AwsClients:
    """One boto3 session; one client per (service, region), created on first use.

    Throttling and transient 5xx errors are retried by botocore's "standard" retry mode,
    with exponential backoff and jitter; ``max_attempts`` is the total number of attempts
    (None: AWS_MAX_ATTEMPTS or the profile's max_attempts, else botocore's default of 3).
    What is still failing after that reaches certman as a retryable error.
    """

    region: str
    profile: str = ""
    endpoint_url: str = ""
    max_attempts: int | None = None
    _session: Any = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)
    # boto3 clients are thread-safe, building them from one session is not.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, aws: Mapping[str, Any]) -> AwsClients:
        return cls(
            region=str(aws.get("region") or "us-east-1"),
            profile=str(aws.get("profile") or ""),
            endpoint_url=str(aws.get("endpoint_url") or ""),
        )

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._build(service, key[1])
            return self._clients[key]

    def _build(self, service: str, region: str) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound

        if self._session is None:
            try:
                self._session = boto3.session.Session(profile_name=self.profile or None)
            except ProfileNotFound:
                raise ConfigError(
                    f"The AWS profile {self.profile!r} in [aws] profile does not exist; add it "
                    "to ~/.aws/config, or remove the key to use the default credential chain."
                ) from None
        retries: dict[str, Any] = {"mode": "standard"}
        if self.max_attempts is not None:
            retries["total_max_attempts"] = self.max_attempts
        return self._session.client(
            service,
            region_name=region,
            endpoint_url=self.endpoint_url or None,
            config=Config(retries=retries, connect_timeout=10, read_timeout=30),  # type: ignore[arg-type]
        )


def region_of(arn: str) -> str:
    """The region field of an ARN (arn:partition:service:region:account:resource)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""
