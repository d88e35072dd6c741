"""DNS-01 (RFC 8555 section 8.4): an operator's hook command, or Route53 through boto3."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certman.acme_client.solvers.contract import ChallengeRequest

from certman.errors import CertmanError, ConfigError, IssuanceError

if TYPE_CHECKING:
    from certman.contracts.build_context import AwsClientFactory

log = logging.getLogger("certman.acme")


class ExecHookSolver:
    """Runs ``dns_hook`` once per record with CERTMAN_ACME_* in its environment.

    The hook must return only once the record is published (or fail with a non-zero exit).
    """

    kind = "dns-01"

    def __init__(self, *, hook: Path, timeout: float, setting: str) -> None:
        self.hook = hook
        self.timeout = timeout
        self.setting = setting

    def perform(self, requests: list[ChallengeRequest]) -> None:
        for request in requests:
            self._run("set", request)

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        failures = []
        for request in requests:  # every record, even when one fails
            try:
                self._run("clear", request)
            except IssuanceError as e:
                failures.append(e.message)
        if failures:
            raise IssuanceError(" ".join(failures))

    def check(self) -> str:
        if not os.access(self.hook, os.X_OK):
            raise IssuanceError(f"The DNS hook {self.hook} is not executable ({self.setting}).")
        return f"DNS hook {self.hook} is executable"

    def _run(self, action: str, request: ChallengeRequest) -> None:
        env = dict(os.environ)
        env.update(
            CERTMAN_ACME_ACTION=action,
            CERTMAN_ACME_DOMAIN=request.domain,
            CERTMAN_ACME_TXT_NAME=request.txt_name.rstrip("."),
            CERTMAN_ACME_TXT_VALUE=request.txt_value,
        )
        try:
            done = subprocess.run(
                [str(self.hook)],
                env=env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise IssuanceError(
                f"The DNS hook {self.hook} did not finish {action} for {request.txt_name} within "
                f"{_seconds(self.timeout)} (propagation_timeout in {self.setting})."
            ) from None
        except OSError as e:
            raise IssuanceError(f"The DNS hook {self.hook} cannot run: {e.strerror}.") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise IssuanceError(
                f"The DNS hook {self.hook} failed to {action} the TXT record "
                f"{request.txt_name} (exit {done.returncode}: {tail[0][:200]})."
            )


class Route53Solver:
    """Publishes TXT records in Route53 and waits until the change is INSYNC.

    ``client`` is a boto3 Route53 client built once by the factory (passed in, so tests
    point it at a moto server). Values already in a record set are kept: only certman's own
    values are added and removed.
    """

    kind = "dns-01"
    TTL = 60

    def __init__(
        self,
        *,
        client: Any,
        hosted_zone_id: str | None,
        timeout: float,
        setting: str,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.hosted_zone_id = hosted_zone_id
        self.timeout = timeout
        self.setting = setting
        self.sleep = sleep
        self.monotonic = monotonic
        self._lock = threading.Lock()  # read-modify-write of a record set

    def perform(self, requests: list[ChallengeRequest]) -> None:
        changes = [self._change(name, add=values) for name, values in _by_name(requests).items()]
        for change_id in changes:
            self._wait_insync(change_id)

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        failures: list[str] = []
        for name, values in _by_name(requests).items():  # every name, even when one fails
            try:
                self._change(name, remove=values)
            except CertmanError as e:
                failures.append(e.message)
        if failures:
            raise IssuanceError(" ".join(failures))

    def check(self) -> str:
        with self._errors("reading the hosted zones"):
            if self.hosted_zone_id:
                zone = self.client.get_hosted_zone(Id=self.hosted_zone_id)["HostedZone"]
                found = f"hosted zone {zone['Name']} ({self.hosted_zone_id}) is readable"
            else:
                count = len(self.client.list_hosted_zones()["HostedZones"])
                found = f"answers ({count} hosted zones visible)"
        return f"Route53 {found}"

    # --- internals ---------------------------------------------------------------------

    def _change(
        self, name: str, *, add: list[str] | None = None, remove: list[str] | None = None
    ) -> str | None:
        fqdn = name.rstrip(".") + "."
        with self._lock, self._errors(f"changing the TXT record {fqdn}"):
            zone = self._zone_for(fqdn)
            current, ttl = self._current(zone, fqdn)
            wanted = list(current)
            for value in add or ():
                if value not in wanted:
                    wanted.append(value)
            wanted = [v for v in wanted if v not in (remove or ())]
            if wanted == current:
                return None
            if wanted:
                change = _record_change("UPSERT", fqdn, wanted, self.TTL)
            else:
                change = _record_change("DELETE", fqdn, current, ttl)
            answer = self.client.change_resource_record_sets(
                HostedZoneId=zone,
                ChangeBatch={"Comment": "certman ACME dns-01", "Changes": [change]},
            )
            return str(answer["ChangeInfo"]["Id"])

    def _current(self, zone: str, fqdn: str) -> tuple[list[str], int]:
        """The TXT values at ``fqdn`` now, and their TTL (a DELETE must match both)."""
        answer = self.client.list_resource_record_sets(
            HostedZoneId=zone, StartRecordName=fqdn, StartRecordType="TXT", MaxItems="1"
        )
        for record in answer.get("ResourceRecordSets", []):
            if record["Name"].rstrip(".").lower() == fqdn.rstrip(".").lower() and (
                record["Type"] == "TXT"
            ):
                values = [r["Value"].strip('"') for r in record.get("ResourceRecords", [])]
                return values, int(record.get("TTL", self.TTL))
        return [], self.TTL

    def _zone_for(self, fqdn: str) -> str:
        if self.hosted_zone_id:
            return self.hosted_zone_id
        best: tuple[int, str] | None = None
        paginator = self.client.get_paginator("list_hosted_zones")
        for page in paginator.paginate():
            for zone in page["HostedZones"]:
                suffix = zone["Name"].rstrip(".").lower()
                name = fqdn.rstrip(".").lower()
                if (name == suffix or name.endswith("." + suffix)) and (
                    best is None or len(suffix) > best[0]
                ):
                    best = (len(suffix), zone["Id"].rsplit("/", 1)[-1])
        if best is None:
            raise ConfigError(
                f"No Route53 hosted zone holds {fqdn}; create one or set hosted_zone_id in "
                f"{self.setting}."
            )
        return best[1]

    def _wait_insync(self, change_id: str | None) -> None:
        """Route53's GetChange: PENDING until every authoritative server has the record."""
        if change_id is None:
            return
        deadline = self.monotonic() + self.timeout
        delay = 0.2
        while True:
            with self._errors("waiting for the Route53 change"):
                status = self.client.get_change(Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return
            if self.monotonic() + delay > deadline:
                raise IssuanceError(
                    f"The Route53 change {change_id} was not INSYNC within "
                    f"{_seconds(self.timeout)} (propagation_timeout in {self.setting}); "
                    "certman will retry.",
                    retryable=True,
                )
            self.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _botocore(action)


@contextmanager
def _botocore(action: str) -> Iterator[None]:
    """Translate botocore's exceptions (the only place they are caught) into certman errors."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError:
        raise ConfigError(
            f"No AWS credentials for Route53 while {action}; configure them "
            "(environment, or profile in [aws]) for the dns-01 solver."
        ) from None
    except ClientError as error:
        info = error.response.get("Error", {})
        code = info.get("Code", "Unknown")
        throttled = code in {"Throttling", "PriorRequestNotComplete", "ServiceUnavailable"}
        raise IssuanceError(
            f"Route53 refused {action}: {code}: {info.get('Message', '')}".rstrip(": ") + ".",
            retryable=throttled,
        ) from None
    except BotoCoreError as error:
        raise IssuanceError(f"Route53 failed while {action}: {error}.", retryable=True) from None


def _seconds(value: float) -> str:
    """``120 s``, ``0.5 s``: never "0 s" for a timeout under a second."""
    return f"{value:g} s"


def _by_name(requests: list[ChallengeRequest]) -> dict[str, list[str]]:
    """Wildcard and apex share one name (_acme-challenge.example.com) with two values."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        grouped[request.txt_name.rstrip(".").lower()].append(request.txt_value)
    return dict(grouped)


def _record_change(action: str, fqdn: str, values: list[str], ttl: int) -> dict[str, Any]:
    return {
        "Action": action,
        "ResourceRecordSet": {
            "Name": fqdn,
            "Type": "TXT",
            "TTL": ttl,
            "ResourceRecords": [{"Value": f'"{value}"'} for value in values],
        },
    }


def route53_client(aws: AwsClientFactory) -> Any:
    """The runtime's Route53 client: one boto3 session per process, built from [aws]."""
    try:
        import boto3  # noqa: F401  (only to say what to install)
    except ImportError:
        raise ConfigError(
            "dns_provider = \"route53\" needs boto3; install it with: pip install 'certman[aws]'."
        ) from None
    with _botocore("building the Route53 client from [aws]"):
        return aws.client("route53")
