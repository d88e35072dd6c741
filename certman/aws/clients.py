"""boto3 clients, built once per runtime from [aws] and handed to the adapters."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certman.errors import ConfigError, OperationError, ValidationError

# botocore's own rule for a region (it is a host label: botocore.client's
# _validate_region_name): letters, digits and hyphens, 1-63, no hyphen at either end, not
# all digits. Deliberately no stricter: S3-compatible stores behind endpoint_url use names
# such as "garage".
_REGION = re.compile(r"(?![0-9]+\Z)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")


def check_region(value: str, setting: str, source: str = "") -> str:
    """``value`` when it is a region name; else a refusal naming where the value came from.

    ``setting`` is the configuration key ("aws.region", "targets.west.region"; a
    ConfigError naming ``source``, the file) or the command-line flag ("--region"; a
    ValidationError).
    """
    if _REGION.fullmatch(value):
        return value
    if setting.startswith("--"):
        raise ValidationError(
            f'{setting} {value!r} is not an AWS region name; use one such as "us-west-2".'
        )
    raise ConfigError(
        f"{setting} = {value!r} in {source or 'the configuration'} is not an AWS region "
        'name; use one such as "us-east-1" (letters, digits and hyphens).'
    )


@dataclass
class AwsClients:
    """One boto3 session; one client per (service, region), created on first use.

    Throttling and transient 5xx errors are retried by botocore's "standard" retry mode,
    with exponential backoff and jitter; ``max_attempts`` is the total number of attempts
    (None: AWS_MAX_ATTEMPTS or the profile's max_attempts, else botocore's default of 3).
    What is still failing after that reaches certman as a retryable error. ``source`` is
    the configuration file, named when a setting is refused.
    """

    region: str
    profile: str = ""
    endpoint_url: str = ""
    max_attempts: int | None = None
    source: str = ""
    _session: Any = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)
    # boto3 clients are thread-safe, building them from one session is not.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, aws: Mapping[str, Any], *, source: str = "") -> AwsClients:
        """The clients for an [aws] table; a malformed region or endpoint is refused here."""
        clients = cls(
            region=str(aws.get("region") or "us-east-1"),
            profile=str(aws.get("profile") or ""),
            endpoint_url=str(aws.get("endpoint_url") or ""),
            source=source,
        )
        check_region(clients.region, "aws.region", clients._where())
        if clients.endpoint_url and not re.match(r"^https?://[^\s/]+", clients.endpoint_url):
            raise ConfigError(
                f"aws.endpoint_url = {clients.endpoint_url!r} in {clients._where()} is not an "
                'http(s) URL; use one such as "https://s3.eu-west-1.amazonaws.com" or remove it.'
            )
        return clients

    def client(self, service: str, region: str | None = None, *, setting: str = "") -> Any:
        """The ``service`` client of ``region`` (None: [aws] region).

        Another region is checked first and refused naming ``setting``, the configuration
        key or flag it came from (see ``check_region``).
        """
        if region is not None and region != self.region:
            check_region(region, setting or "region", self._where())
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._build(service, key[1])
            return self._clients[key]

    def _where(self) -> str:
        return self.source or "the configuration"

    def _build(self, service: str, region: str) -> Any:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, InvalidRegionError, ProfileNotFound
        except ImportError:
            raise ConfigError(
                "The AWS backends need boto3, which is not installed; install it with: "
                "pip install 'certman[aws]'."
            ) from None

        try:
            if self._session is None:
                self._session = boto3.session.Session(profile_name=self.profile or None)
            retries: dict[str, Any] = {"mode": "standard"}
            if self.max_attempts is not None:
                retries["total_max_attempts"] = self.max_attempts
            return self._session.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint_url or None,
                config=Config(retries=retries, connect_timeout=10, read_timeout=30),  # type: ignore[arg-type]
            )
        except ProfileNotFound:
            raise ConfigError(
                f"The AWS profile {self.profile!r} in [aws] profile does not exist; add it "
                "to ~/.aws/config, or remove the key to use the default credential chain."
            ) from None
        except InvalidRegionError:
            raise ConfigError(
                f"The AWS region {region!r} set in {self._where()} is not a region name; use "
                'one such as "us-east-1".'
            ) from None
        except ValueError:  # botocore's word for an endpoint URL it cannot use
            raise ConfigError(
                f"aws.endpoint_url = {self.endpoint_url!r} in {self._where()} is not an "
                "endpoint botocore can use; fix it or remove it."
            ) from None
        except BotoCoreError as e:
            # e.g. a malformed ~/.aws/config, or an expired SSO token. The class name only:
            # botocore's text may quote a credential.
            raise OperationError(
                f"The AWS SDK could not set up a {service} client ({type(e).__name__}); check "
                "[aws] profile, ~/.aws/config and the AWS_* environment variables.",
                retryable=True,
            ) from None


def region_of(arn: str) -> str:
    """The region field of an ARN (arn:partition:service:region:account:resource)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""
