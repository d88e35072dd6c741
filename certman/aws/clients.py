"""boto3 clients, built once per runtime from [aws] and handed to the adapters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AwsClients:
    """One boto3 session; one client per (service, region), created on first use."""

    region: str
    profile: str = ""
    endpoint_url: str = ""
    max_attempts: int = 5
    _session: Any = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, aws: Mapping[str, Any]) -> AwsClients:
        return cls(
            region=str(aws.get("region") or "us-east-1"),
            profile=str(aws.get("profile") or ""),
            endpoint_url=str(aws.get("endpoint_url") or ""),
        )

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            if self._session is None:
                self._session = boto3.session.Session(profile_name=self.profile or None)
            # botocore's standard retry mode backs off on throttling and 5xx by itself.
            config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts})
            self._clients[key] = self._session.client(
                service,
                region_name=key[1],
                endpoint_url=self.endpoint_url or None,
                config=config,
            )
        return self._clients[key]
