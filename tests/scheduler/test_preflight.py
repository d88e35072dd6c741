"""Preflight: "can we still renew?", checked every preflight_interval and by `certman doctor`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from certman.scheduler.events import PREFLIGHT_FAILED
from certman.scheduler.metrics import Metrics
from certman.scheduler.notify import Notifier
from certman.scheduler.preflight import Preflight
from sqlalchemy import update
from sqlmodel import col, select

from certman.clock import FrozenClock
from certman.contracts.build_context import BuildContext
from certman.contracts.issuer import IssueRequest, IssueResponse, PreflightResult
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.service.checks import run_doctor
from certman.service.runtime import Runtime
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


def build_unreachable(context: BuildContext, settings: Mapping[str, Any]) -> UnreachableIssuer:
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


# --- the inventory's facts and sealed keys (issue 20 items 4 and 7) --------------------------


def _certificate(rt: Runtime, name: str) -> ManagedCertificate:
    with rt.session() as session:
        return session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).one()


def test_preflight_alerts_on_a_moved_expiry_and_restores_it_from_the_certificate(
    tmp_path: Path, webhook: Webhook
) -> None:
    """Both rows pushed to 2099 (no SQL check can tell): the preflight parses the stored
    certificate, alerts, and re-derives the facts, so the renewal happens on time."""
    home = make_home(tmp_path / "h", notify(webhook))
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    rt = runtime_for(home, clock)
    issue(rt, "web", validity=30)
    issue(rt, "api", validity=30)
    honest = _certificate(rt, "web")
    far = datetime(2099, 1, 1, tzinfo=UTC)
    with rt.session() as session:
        session.execute(
            update(ManagedCertificate)
            .where(col(ManagedCertificate.name) == "web")
            .values(not_after=far, renewal_due_at=far)
        )
        session.execute(
            update(Revision).where(col(Revision.certificate_id) == honest.id).values(not_after=far)
        )
        session.commit()
    report = Preflight(rt, Notifier.from_config(rt)).run()
    failing = [c for c in report.checks if not c.ok]
    assert [c.area for c in failing] == ["facts web"]
    assert "certificate not_after is 2099-01-01T00:00:00Z" in failing[0].message
    assert "Restored from its certificate." in failing[0].message
    alerts = webhook.of(PREFLIGHT_FAILED)
    assert [a["detail"]["Check"] for a in alerts] == ["facts web"]
    restored = _certificate(rt, "web")
    assert (restored.not_after, restored.renewal_due_at) == (
        honest.not_after,
        honest.renewal_due_at,
    )
    with rt.session() as session:
        event = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc())).first()
    assert event is not None and event.action == "certificate.facts_restored"
    assert event.subject == "web"
    assert Preflight(rt, Notifier.from_config(rt)).run().ok, "nothing left to restore"
    assert run_doctor(rt).ok


def test_preflight_does_not_restore_from_a_certificate_the_audit_trail_does_not_vouch_for(
    tmp_path: Path, webhook: Webhook
) -> None:
    home = make_home(tmp_path / "h", notify(webhook))
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    issue(rt, "web", validity=30)
    issue(rt, "long", validity=300)
    web, long = _certificate(rt, "web"), _certificate(rt, "long")
    with rt.session() as session:
        other = session.exec(select(Revision).where(Revision.certificate_id == long.id)).one()
        session.execute(
            update(Revision)
            .where(col(Revision.certificate_id) == web.id)
            .values(certificate_pem=other.certificate_pem)
        )
        session.commit()
    report = Preflight(rt, Notifier.from_config(rt)).run()
    failing = [c for c in report.checks if not c.ok]
    # The key no longer matches the certificate stored with it either.
    assert [c.area for c in failing] == ["facts web", "sealed key web"]
    assert "is not the one issued" in failing[0].message
    assert "Restored" not in failing[0].message
    assert _certificate(rt, "web").not_after == web.not_after, "nothing rewritten"


def test_preflight_alerts_on_a_damaged_sealed_key(tmp_path: Path, webhook: Webhook) -> None:
    home = make_home(tmp_path / "h", notify(webhook))
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    issue(rt, "web")
    web = _certificate(rt, "web")
    with rt.session() as session:
        rev = session.exec(select(Revision).where(Revision.certificate_id == web.id)).one()
        assert rev.sealed_key is not None
        session.execute(
            update(Revision)
            .where(col(Revision.id) == rev.id)
            .values(sealed_key=rev.sealed_key.replace('"ct":"', '"ct":"AAAA'))
        )
        session.commit()
    report = Preflight(rt, Notifier.from_config(rt)).run()
    failing = [c for c in report.checks if not c.ok]
    assert [c.area for c in failing] == ["sealed key web"]
    assert [a["detail"]["Check"] for a in webhook.of(PREFLIGHT_FAILED)] == ["sealed key web"]


def test_kms_sealed_keys_are_sampled_and_the_check_says_so(
    tmp_path: Path,
    moto_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One KMS Decrypt per key: at most REMOTE_SAMPLE of them a check, and the line says so."""
    from certman.service import checks

    kms = boto3.client("kms", region_name="us-east-1", endpoint_url=moto_url)
    key_id = kms.create_key(Description="certman")["KeyMetadata"]["KeyId"]
    home = make_home(
        tmp_path / "h",
        f'[kms]\ntype = "aws-kms"\nkey_id = "{key_id}"\n[aws]\nendpoint_url = "{moto_url}"\n',
    )
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    for name in ("a", "b", "c"):
        issue(rt, name)
    monkeypatch.setattr(checks, "REMOTE_SAMPLE", 2)
    report = checks.CheckReport()
    checks.check_sealed_keys(rt, report)
    assert [(c.area, c.ok) for c in report.checks] == [("sealed keys", True)]
    assert "2 current sealed keys unseal" in report.checks[0].message
    assert "2 of the 3 sealed by a remote key wrapper" in report.checks[0].message
