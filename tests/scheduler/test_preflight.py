"""Preflight: "can we still renew?", checked every preflight_interval and by `certman doctor`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from certman.clock import FrozenClock
from certman.interfaces import IssueRequest, IssueResponse, PreflightResult
from certman.service.checks import run_doctor
from scheduler.events import PREFLIGHT_FAILED
from scheduler.metrics import Metrics
from scheduler.notify import Notifier
from scheduler.preflight import Preflight
from tests.scheduler.conftest import Webhook, make_home, runtime_for
from tests.scheduler.test_notify import moto_url  # noqa: F401  (fixture)
from tests.scheduler.test_reconcile import issue


class UnreachableIssuer:
    """An issuer whose own preflight fails, as an ACME issuer's does when its server is gone."""

    def __init__(self, name: str) -> None:
        self.name = name

    def issue(self, request: IssueRequest) -> IssueResponse:
        raise AssertionError("preflight never issues")

    def preflight(self, now: datetime) -> PreflightResult:
        return PreflightResult(
            ok=False, checks=(("directory", False, "https://acme.invalid/ does not answer"),)
        )


def build_unreachable(runtime: Any, settings: Mapping[str, Any]) -> UnreachableIssuer:
    return UnreachableIssuer(str(settings["name"]))


def notify(webhook: Webhook) -> str:
    return f'[notify.webhook]\nurl = "{webhook.url}"\n'


def test_an_issuers_failing_preflight_alerts_once_a_day_and_shows_in_doctor(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", notify(webhook) + '[issuers.acme]\ntype = "unreachable"\n')
    clock = FrozenClock(datetime(2030, 5, 1, 8, tzinfo=UTC))
    rt = runtime_for(home, clock)
    rt.registry.issuers["unreachable"] = "tests.scheduler.test_preflight:build_unreachable"
    metrics = Metrics()
    preflight = Preflight(rt, Notifier.from_config(rt), metrics)
    report = preflight.run()
    assert not report.ok
    preflight.run()  # the next preflight the same day: no second alert
    alerts = webhook.of(PREFLIGHT_FAILED)
    assert len(alerts) == 1
    assert alerts[0]["detail"] == {
        "Check": "issuer acme",
        "Message": "directory: https://acme.invalid/ does not answer",
    }
    assert metrics.preflight_ok.labels(area="issuer acme")._value.get() == 0
    assert metrics.preflight_ok.labels(area="ca default")._value.get() == 1
    clock.advance(timedelta(days=1))
    preflight.run()
    assert len(webhook.of(PREFLIGHT_FAILED)) == 2, "still failing a day later: alert again"
    doctor = run_doctor(rt)
    assert any(
        c.area == "issuer acme" and not c.ok and "does not answer" in c.message
        for c in doctor.checks
    )


def test_a_ca_that_expires_before_the_next_renewal_fails_preflight_long_before(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", notify(webhook) + '[ca]\nintermediate_validity = "100d"\n')
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    issue(rt, "web", validity=70)  # renews at day ~47 for 70 days: past the CA's day 100
    report = Preflight(rt, Notifier.from_config(rt)).run()
    failing = [c for c in report.checks if not c.ok]
    assert [c.area for c in failing] == ["ca default"]
    assert "before the next renewal of web" in failing[0].message
    assert len(webhook.of(PREFLIGHT_FAILED)) == 1


def test_a_disabled_kms_key_fails_preflight_and_doctor(
    tmp_path: Path,
    moto_url: str,  # noqa: F811
    webhook: Webhook,
) -> None:
    kms = boto3.client("kms", region_name="us-east-1", endpoint_url=moto_url)
    key_id = kms.create_key(Description="certman")["KeyMetadata"]["KeyId"]
    home = make_home(
        tmp_path / "h",
        f'[kms]\ntype = "aws-kms"\nkey_id = "{key_id}"\n'
        f'[aws]\nendpoint_url = "{moto_url}"\n' + notify(webhook),
    )
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    assert Preflight(rt, Notifier.from_config(rt)).run().ok
    kms.disable_key(KeyId=key_id)
    report = Preflight(rt, Notifier.from_config(rt)).run()
    failing = [c for c in report.checks if not c.ok]
    assert [c.area for c in failing] == ["keys"] and "Disabled" in failing[0].message
    assert len(webhook.of(PREFLIGHT_FAILED)) == 1
    assert any(c.area == "keys" and not c.ok for c in run_doctor(rt).checks)
