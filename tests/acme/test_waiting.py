"""Waiting on the server and on DNS: Retry-After honoured, back-off, Route53 INSYNC, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from certman.acme_client.polling import FIRST_DELAY, MAX_DELAY, wait_for
from certman.acme_client.solvers.contract import ChallengeRequest
from certman.acme_client.solvers.dns01 import DnsZoneSolver, ExecHookSolver

from certman.aws.route53 import Route53Zone
from certman.errors import IssuanceError

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class FakeTime:
    """A monotonic clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class Answer:
    status: str
    retry_after: float | None = None


def poll(answers: list[Answer], timer: FakeTime, *, timeout: float = 60) -> Answer:
    remaining = list(answers)

    def fetch() -> Answer:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return wait_for(
        fetch,
        settled=lambda a: a.status == "valid",
        retry_after=lambda a: a.retry_after,
        deadline=timer.monotonic() + timeout,
        what="The order",
        now=lambda: NOW,
        sleep=timer.sleep,
        monotonic=timer.monotonic,
    )


def test_polling_waits_exactly_the_servers_retry_after() -> None:
    timer = FakeTime()
    answers = [Answer("processing", 3), Answer("processing", 7), Answer("valid")]
    assert poll(answers, timer).status == "valid"
    assert timer.sleeps == [3, 7]


def test_polling_without_retry_after_backs_off_from_50_ms_doubling_to_2_s() -> None:
    timer = FakeTime()
    answers = [Answer("pending")] * 8 + [Answer("valid")]
    assert poll(answers, timer).status == "valid"
    assert timer.sleeps == [FIRST_DELAY * 2**i for i in range(6)] + [MAX_DELAY, MAX_DELAY]
    assert MAX_DELAY == 2.0 and FIRST_DELAY == 0.05


def test_a_zero_retry_after_still_waits_a_little() -> None:
    timer = FakeTime()
    assert poll([Answer("pending", 0), Answer("valid")], timer).status == "valid"
    assert timer.sleeps == [FIRST_DELAY], "Retry-After: 0 must not spin"


def test_a_retry_after_past_the_deadline_stops_at_once_and_is_retryable() -> None:
    timer = FakeTime()
    with pytest.raises(IssuanceError) as error:
        poll([Answer("processing", 120)], timer, timeout=30)
    assert timer.sleeps == [], "no point sleeping past the deadline"
    assert error.value.retryable
    assert error.value.retry_after == NOW + timedelta(seconds=121)
    assert "The order did not finish in time" in error.value.message
    assert "resume it on the next attempt" in error.value.message


# --- Route53: the change is published only once INSYNC ------------------------------------


class FakeRoute53:
    """GetChange answers the statuses given, in order (moto answers INSYNC at once)."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.get_change_calls = 0
        self.batches: list[dict[str, Any]] = []

    def list_resource_record_sets(self, **_: Any) -> dict[str, Any]:
        return {"ResourceRecordSets": []}

    def change_resource_record_sets(self, *, HostedZoneId: str, ChangeBatch: Any) -> Any:
        self.batches.append(ChangeBatch)
        return {"ChangeInfo": {"Id": "/change/C123", "Status": "PENDING"}}

    def get_change(self, *, Id: str) -> Any:
        status = self.statuses[min(self.get_change_calls, len(self.statuses) - 1)]
        self.get_change_calls += 1
        return {"ChangeInfo": {"Id": Id, "Status": status}}


def dns_request(
    txt_name: str = "_acme-challenge.example.com", value: str = "v"
) -> ChallengeRequest:
    return ChallengeRequest(
        kind="dns-01",
        domain=txt_name.removeprefix("_acme-challenge."),
        token="t",
        key_authorization="t.x",
        txt_name=txt_name,
        txt_value="v",
    )


def route53(client: FakeRoute53, timer: FakeTime, timeout: float) -> DnsZoneSolver:
    zone = Route53Zone(
        client=client,
        hosted_zone_id="Z1",
        setting="[issuers.le] of /c.toml",
        sleep=timer.sleep,
        monotonic=timer.monotonic,
    )
    return DnsZoneSolver(zone=zone, timeout=timeout)


def test_route53_perform_returns_only_once_the_change_is_insync() -> None:
    client, timer = FakeRoute53(["PENDING", "PENDING", "INSYNC"]), FakeTime()
    route53(client, timer, timeout=60).perform([dns_request()])
    assert client.get_change_calls == 3
    assert timer.sleeps == [0.2, 0.4]
    assert len(client.batches) == 1


def test_route53_never_insync_is_a_retryable_timeout() -> None:
    client, timer = FakeRoute53(["PENDING"]), FakeTime()
    with pytest.raises(IssuanceError) as error:
        route53(client, timer, timeout=30).perform([dns_request()])
    assert error.value.retryable
    assert "/change/C123 was not INSYNC within 30 s" in error.value.message
    assert "propagation_timeout in [issuers.le] of /c.toml" in error.value.message
    assert sum(timer.sleeps) <= 30


def test_a_sub_second_timeout_is_not_printed_as_zero() -> None:
    client, timer = FakeRoute53(["PENDING"]), FakeTime()
    with pytest.raises(IssuanceError, match=r"within 0\.5 s"):
        route53(client, timer, timeout=0.5).perform([dns_request()])


def test_a_hook_past_its_timeout_names_the_timeout(tmp_path: Path) -> None:
    hook = tmp_path / "slow-hook"
    hook.write_text("#!/bin/sh\nexec sleep 5\n")
    hook.chmod(0o755)
    solver = ExecHookSolver(hook=hook, timeout=0.2, setting="[issuers.dns] of /c.toml")
    with pytest.raises(IssuanceError) as error:
        solver.perform([dns_request()])
    assert "did not finish set for _acme-challenge.example.com within 0.2 s" in error.value.message
