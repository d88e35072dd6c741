"""The reconcile tick on a frozen clock: renewals, back-off, notifications sent once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from certman.scheduler.events import DEPLOY_FAILED, EXPIRING, RENEWAL_FAILED, RENEWAL_RECOVERED
from certman.scheduler.notify import Notifier
from certman.scheduler.reconcile import Reconciler
from sqlmodel import select

from certman.clock import FrozenClock
from certman.inventory.tables import ManagedCertificate
from certman.lifecycle.states import RevisionState
from certman.models import KeyType
from certman.service.leases import Lease, claim
from certman.service.lifecycle import IssueSpec, Lifecycle
from tests.scheduler.conftest import Webhook, make_home, runtime_for


def issue(rt, name: str, issuer: str = "default", validity: int = 30) -> None:  # type: ignore[no-untyped-def]
    lifecycle = Lifecycle(rt)
    lifecycle.plan(
        IssueSpec(
            name=name,
            domains=(f"{name}.example.com",),
            issuer=issuer,
            key_type=KeyType.EC_P256,
            validity=timedelta(days=validity),
        )
    )
    lifecycle.advance(name)


def reconciler(rt, webhook: Webhook | None = None) -> Reconciler:  # type: ignore[no-untyped-def]
    notifier = Notifier(rt, webhook_url=webhook.url if webhook else "")
    return Reconciler(rt, holder="test", notifier=notifier)


def config(webhook: Webhook, extra: str = "") -> str:
    return (
        f'[notify]\nthresholds = ["14d", "7d"]\n[notify.webhook]\nurl = "{webhook.url}"\n'
        f'[service]\nmax_backoff = "4h"\n{extra}'
    )


def test_tick_renews_what_is_due_and_nothing_else(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    rt = runtime_for(make_home(tmp_path / "h", config(webhook)), clock)
    issue(rt, "short", validity=3)
    issue(rt, "long", validity=90)
    assert reconciler(rt, webhook).tick().renewed == []
    clock.advance(timedelta(days=2, hours=1))  # past 2/3 of "short"'s 3 days
    report = reconciler(rt, webhook).tick()
    assert report.renewed == ["short"] and not report.failed
    assert Lifecycle(rt).due() == []


def test_expiry_notices_go_out_once_per_threshold_even_after_a_restart(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    rt = runtime_for(make_home(tmp_path / "h", config(webhook, extra="")), clock)
    issue(rt, "web", validity=60)
    # a failed, unrenewable certificate keeps getting closer to expiry
    from sqlmodel import select

    from certman.inventory.tables import ManagedCertificate

    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate)).one()
        cert.status = "failed"
        session.add(cert)
        session.commit()
    clock.advance(timedelta(days=47))  # 13 days left: the 14d threshold
    reconciler(rt, webhook).tick()
    reconciler(rt, webhook).tick()
    reconciler(runtime_for(tmp_path / "h", clock), webhook).tick()  # a restarted service
    notices = webhook.of(EXPIRING)
    assert len(notices) == 1
    event = notices[0]
    assert event["detail"]["DaysToExpiry"] == 13
    assert event["detail"]["CommonName"] == "web.example.com"
    assert event["resources"] == ["certman:certificate/web"]
    assert {"version", "id", "detail-type", "source", "time", "region", "resources"} <= set(event)
    clock.advance(timedelta(days=7))  # 6 days left: the 7d threshold
    reconciler(rt, webhook).tick()
    assert len(webhook.of(EXPIRING)) == 2


def test_a_failing_certificate_backs_off_and_never_blocks_the_others(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    extra = '[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\nfail_from_revision = 2\n'
    rt = runtime_for(make_home(tmp_path / "h", config(webhook) + extra), clock)
    issue(rt, "bad", issuer="flaky", validity=3)
    issue(rt, "good", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    report = reconciler(rt, webhook).tick()
    assert report.renewed == ["good"]
    assert "bad" in report.failed
    failed = webhook.of(RENEWAL_FAILED)
    assert len(failed) == 1 and failed[0]["detail"]["Retryable"] is True
    from sqlmodel import select

    from certman.inventory.tables import ManagedCertificate

    def bad():  # type: ignore[no-untyped-def]
        with rt.session() as session:
            return session.exec(
                select(ManagedCertificate).where(ManagedCertificate.name == "bad")
            ).one()

    first_retry = bad().next_attempt_at
    assert first_retry is not None and first_retry > clock.now()
    assert reconciler(rt, webhook).tick().failed == {}, "backing off: not tried again yet"
    for _ in range(6):  # many failures: the back-off is capped by [service] max_backoff
        clock.set(bad().next_attempt_at)
        reconciler(rt, webhook).tick()
    assert bad().next_attempt_at - clock.now() <= timedelta(hours=4)
    assert bad().failures == 7
    assert len(webhook.of(RENEWAL_FAILED)) == 7


def test_recovery_after_failures_is_notified(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    extra = '[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\nfail_from_revision = 2\n'
    home = make_home(tmp_path / "h", config(webhook) + extra)
    rt = runtime_for(home, clock)
    issue(rt, "bad", issuer="flaky", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    reconciler(rt, webhook).tick()
    # the operator fixes the issuer
    config_file = home / "certman.toml"
    config_file.write_text(config_file.read_text().replace('failure = "retryable"\n', ""))
    rt = runtime_for(home, clock)
    with rt.session() as session:
        from sqlmodel import select

        from certman.inventory.tables import ManagedCertificate

        cert = session.exec(select(ManagedCertificate)).one()
        clock.set(cert.next_attempt_at)
    assert reconciler(rt, webhook).tick().renewed == ["bad"]
    recovered = webhook.of(RENEWAL_RECOVERED)
    assert len(recovered) == 1 and recovered[0]["detail"]["FailuresBefore"] == 1


def test_a_webhook_that_fails_is_tried_again_after_a_short_back_off(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    rt = runtime_for(make_home(tmp_path / "h", config(webhook)), clock)
    issue(rt, "web", validity=20)
    clock.advance(timedelta(days=7))  # 13 days left
    webhook.fail = True
    reconciler(rt, webhook).tick()
    webhook.fail = False
    assert reconciler(rt, webhook).tick().notified == 0, "backing off: not tried again yet"
    clock.advance(timedelta(minutes=2))  # the first retry comes after about a minute
    assert reconciler(rt, webhook).tick().notified == 1
    reconciler(rt, webhook).tick()
    assert len(webhook.of(EXPIRING)) == 1 and webhook.attempts == 2


def test_a_permanent_failure_alerts_once_and_is_not_retried(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    extra = '[issuers.gone]\ntype = "fake"\nfailure = "permanent"\nfail_from_revision = 2\n'
    rt = runtime_for(make_home(tmp_path / "h", config(webhook) + extra), clock)
    issue(rt, "doomed", issuer="gone", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    assert "doomed" in reconciler(rt, webhook).tick().failed
    for _ in range(3):
        clock.advance(timedelta(hours=6))
        assert reconciler(rt, webhook).tick().failed == {}, "a permanent failure is not retried"
    (alert,) = webhook.of(RENEWAL_FAILED)
    assert alert["detail"]["Retryable"] is False and alert["detail"]["NextAttemptAt"] is None
    assert "refused doomed" in alert["detail"]["Error"]
    assert alert["detail"]["CertificateName"] == "doomed"


def test_a_failed_deployment_is_notified_as_such(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    flag = tmp_path / "reload-fails"
    target = (
        f'[targets.web]\ntype = "file"\ncert_path = "{tmp_path}/web.pem"\n'
        f'key_path = "{tmp_path}/web.key"\nreload_command = "test ! -e {flag}"\n'
    )
    rt = runtime_for(make_home(tmp_path / "h", config(webhook) + target), clock)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(
        IssueSpec(
            name="site",
            domains=("site.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=3),
            targets=("web",),
        )
    )
    lifecycle.advance("site")
    flag.touch()
    clock.advance(timedelta(days=2, hours=1))
    assert "site" in reconciler(rt, webhook).tick().failed
    (alert,) = webhook.of(DEPLOY_FAILED)
    assert alert["detail"]["CertificateName"] == "site" and alert["detail"]["Revision"] == 2
    assert webhook.of(RENEWAL_FAILED) == []


def test_a_certificate_held_by_another_instance_is_left_alone_until_its_lease_expires(
    tmp_path: Path, clock: FrozenClock
) -> None:
    rt = runtime_for(make_home(tmp_path / "h"), clock)
    issue(rt, "web", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    assert claim(rt, "web", Lease(holder="crashed-instance", duration=timedelta(minutes=10)))
    report = reconciler(rt).tick()
    assert report.skipped == ["web"] and report.renewed == []
    clock.advance(timedelta(minutes=11))  # its holder died: the lease ran out
    assert reconciler(rt).tick().renewed == ["web"]


def test_a_crash_renewing_one_certificate_never_blocks_the_others(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime_for(make_home(tmp_path / "h", config(webhook)), clock)
    for name in ("a", "b", "c"):
        issue(rt, name, validity=3)
    clock.advance(timedelta(days=2, hours=1))
    worker = reconciler(rt, webhook)
    real_renew = worker.lifecycle.renew

    def renew(name: str, *, force: bool = False):  # type: ignore[no-untyped-def]
        if name == "b":
            raise RuntimeError("database connection lost")
        return real_renew(name, force=force)

    monkeypatch.setattr(worker.lifecycle, "renew", renew)
    report = worker.tick()
    assert sorted(report.renewed) == ["a", "c"]
    assert "RuntimeError" in report.failed["b"]
    (alert,) = webhook.of(RENEWAL_FAILED)
    assert alert["detail"]["Retryable"] is True


def test_stopping_ends_the_tick_after_the_step_in_flight_and_the_next_tick_resumes(
    tmp_path: Path, clock: FrozenClock
) -> None:
    rt = runtime_for(make_home(tmp_path / "h"), clock)
    issue(rt, "web", validity=3)
    issue(rt, "api", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    worker = reconciler(rt)
    states: list[RevisionState] = []

    def sigterm_after_key_sealed(name: str, number: int, state: RevisionState) -> None:
        states.append(state)
        if state == RevisionState.KEY_SEALED:
            worker.stopping.set()  # as the SIGTERM handler does

    worker.lifecycle.observers.insert(0, sigterm_after_key_sealed)
    report = worker.tick()
    assert len(report.interrupted) == 1 and report.renewed == []
    name = report.interrupted[0]
    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).one()
        assert cert.claimed_by is None, "the claim is given back"
    assert states == [RevisionState.PLANNED, RevisionState.KEY_SEALED]
    assert Lifecycle(rt).unfinished() == [name]
    assert sorted(reconciler(rt).tick().renewed) == ["api", "web"]


def test_a_failure_notice_the_webhook_missed_goes_out_on_a_later_tick(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    extra = '[issuers.gone]\ntype = "fake"\nfailure = "permanent"\nfail_from_revision = 2\n'
    rt = runtime_for(make_home(tmp_path / "h", config(webhook) + extra), clock)
    issue(rt, "doomed", issuer="gone", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    webhook.fail = True  # down at the moment of the permanent failure
    assert "doomed" in reconciler(rt, webhook).tick().failed
    assert webhook.of(RENEWAL_FAILED) == []
    webhook.fail = False
    clock.advance(timedelta(minutes=2))
    restarted = runtime_for(tmp_path / "h", clock)  # even across a restart
    # the failure notice, and the expiry notice of the failed certificate (23 h left)
    assert reconciler(restarted, webhook).tick().notified == 2
    clock.advance(timedelta(minutes=2))
    reconciler(restarted, webhook).tick()
    (alert,) = webhook.of(RENEWAL_FAILED)
    assert alert["detail"]["CertificateName"] == "doomed" and alert["detail"]["Retryable"] is False


def test_a_hanging_webhook_never_holds_up_renewals(
    tmp_path: Path, clock: FrozenClock, webhook: Webhook
) -> None:
    import time

    rt = runtime_for(make_home(tmp_path / "h", config(webhook)), clock)
    for name in ("soon-a", "soon-b", "soon-c"):
        issue(rt, name, validity=20)  # 13 days left after a week: inside the 14d notice
    issue(rt, "due", validity=9)  # due at day 6
    clock.advance(timedelta(days=7))
    webhook.hang = 30
    worker = Reconciler(
        rt, holder="test", notifier=Notifier(rt, webhook_url=webhook.url, timeout=0.5)
    )
    activated: list[float] = []
    worker.lifecycle.observers.append(
        lambda name, number, state: (
            activated.append(time.monotonic()) if state == RevisionState.ACTIVE else None
        )
    )
    report = worker.tick()
    assert report.renewed == ["due"] and report.notified == 0
    assert webhook.first_at is not None and activated and activated[0] < webhook.first_at, (
        "the renewal came first"
    )
    assert webhook.attempts == 1, "one timeout for the whole tick, not one per notice"
    with rt.session() as session:
        from certman.inventory.tables import Notification

        pending = session.exec(select(Notification.certificate, Notification.pending)).all()
    # the renewed certificate (9 days) is inside the 14d notice too
    assert sorted(pending) == [(n, "webhook") for n in ("due", "soon-a", "soon-b", "soon-c")]
