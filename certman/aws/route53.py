"""Route 53 as a DNS zone for dns-01 TXT records, behind the one botocore translation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from certman.aws.clients import AwsClients
from certman.aws.errors import Hints, aws_call
from certman.errors import ConfigError, IssuanceError


class Route53Zone:
    """TXT record sets in Route 53 (``DnsZone`` of certman.acme_client.solvers.contract).

    ``client`` is a boto3 Route 53 client (passed in, so tests point it at a moto server).
    Values already in a record set are kept: only the values given are added or removed.
    ``setting`` names the configuration table in messages.
    """

    TTL = 60

    def __init__(
        self,
        *,
        client: Any,
        hosted_zone_id: str | None,
        setting: str,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.hosted_zone_id = hosted_zone_id
        self.setting = setting
        self.sleep = sleep
        self.monotonic = monotonic
        self._lock = threading.Lock()  # read-modify-write of a record set

    def add_txt(self, name: str, values: Sequence[str]) -> str | None:
        return self._change(name, add=values)

    def remove_txt(self, name: str, values: Sequence[str]) -> str | None:
        return self._change(name, remove=values)

    def wait_for_change(self, change: str, timeout: float) -> None:
        """Route 53's GetChange: PENDING until every authoritative server has the record."""
        deadline = self.monotonic() + timeout
        delay = 0.2
        while True:
            with self._call("route53:GetChange", change):
                status = self.client.get_change(Id=change)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return
            if self.monotonic() + delay > deadline:
                raise IssuanceError(
                    f"The Route53 change {change} was not INSYNC within {timeout:g} s "
                    f"(propagation_timeout in {self.setting}); certman will retry.",
                    retryable=True,
                )
            self.sleep(delay)
            delay = min(delay * 2, 5.0)

    def check(self) -> str:
        if self.hosted_zone_id:
            with self._call("route53:GetHostedZone", f"hosted zone {self.hosted_zone_id}"):
                zone = self.client.get_hosted_zone(Id=self.hosted_zone_id)["HostedZone"]
            return f"Route53 hosted zone {zone['Name']} ({self.hosted_zone_id}) is readable"
        with self._call("route53:ListHostedZones", "the hosted zones"):
            count = len(self.client.list_hosted_zones()["HostedZones"])
        return f"Route53 answers ({count} hosted zones visible)"

    # --- internals ---------------------------------------------------------------------

    def _call(self, action: str, resource: str) -> Any:
        hints = Hints(missing=f"create it or fix hosted_zone_id in {self.setting}")
        return aws_call(action, resource, IssuanceError, hints)

    def _change(
        self, name: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> str | None:
        fqdn = name.rstrip(".") + "."
        with self._lock:
            zone = self._zone_for(fqdn)
            current, ttl = self._current(zone, fqdn)
            wanted = list(current)
            for value in add:
                if value not in wanted:
                    wanted.append(value)
            wanted = [v for v in wanted if v not in remove]
            if wanted == current:
                return None
            if wanted:
                change = _record_change("UPSERT", fqdn, wanted, self.TTL)
            else:
                change = _record_change("DELETE", fqdn, current, ttl)
            with self._call("route53:ChangeResourceRecordSets", f"the TXT record {fqdn}"):
                answer = self.client.change_resource_record_sets(
                    HostedZoneId=zone,
                    ChangeBatch={"Comment": "certman ACME dns-01", "Changes": [change]},
                )
            return str(answer["ChangeInfo"]["Id"])

    def _current(self, zone: str, fqdn: str) -> tuple[list[str], int]:
        """The TXT values at ``fqdn`` now, and their TTL (a DELETE must match both)."""
        with self._call("route53:ListResourceRecordSets", f"the TXT record {fqdn}"):
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
        """The configured zone, else the hosted zone with the longest suffix of ``fqdn``."""
        if self.hosted_zone_id:
            return self.hosted_zone_id
        best: tuple[int, str] | None = None
        name = fqdn.rstrip(".").lower()
        with self._call("route53:ListHostedZones", "the hosted zones"):
            pages = list(self.client.get_paginator("list_hosted_zones").paginate())
        for page in pages:
            for zone in page["HostedZones"]:
                suffix = zone["Name"].rstrip(".").lower()
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


def route53_zone(aws: AwsClients, *, hosted_zone_id: str | None, setting: str) -> Route53Zone:
    """The zone over the runtime's Route 53 client (one boto3 session, built from [aws])."""
    return Route53Zone(client=aws.client("route53"), hosted_zone_id=hosted_zone_id, setting=setting)


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
