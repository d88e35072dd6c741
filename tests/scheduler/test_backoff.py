"""Retry back-off: jitter that stays under the cap, and retries scaled to short lifetimes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from certman.clock import FrozenClock
from certman.inventory.tables import ManagedCertificate
from certman.models import KeyType
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.renewal import next_attempt_at
from tests.scheduler.conftest import make_home, runtime_for
from tests.scheduler.test_reconcile import reconciler

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CAP = timedelta(hours=32)


def test_at_the_cap_retries_spread_out_below_it_instead_of_in_lockstep() -> None:
    # everything one outage hit, at its 20th failure: far past the cap
    times = {
        next_attempt_at(now=NOW, failures=20, cap=CAP, rng=random.Random(seed))
        for seed in range(200)
    }
    assert all(NOW + CAP * 0.9 <= t <= NOW + CAP for t in times)
    assert len(times) > 150, "the retries are not spread"


def test_below_the_cap_the_jitter_adds_up_to_a_tenth() -> None:
    for seed in range(50):
        first = next_attempt_at(now=NOW, failures=1, rng=random.Random(seed))
        third = next_attempt_at(now=NOW, failures=3, rng=random.Random(seed))
        assert NOW + timedelta(hours=1) <= first <= NOW + timedelta(hours=1.1)
        assert NOW + timedelta(hours=4) <= third <= NOW + timedelta(hours=4.4)


def test_the_first_retry_of_a_short_lived_certificate_is_a_tenth_of_its_lifetime() -> None:
    first = next_attempt_at(now=NOW, failures=1, lifetime=timedelta(seconds=90))
    assert NOW + timedelta(seconds=9) <= first <= NOW + timedelta(seconds=10)
    # a 90-day certificate keeps cert-manager's 1 h
    assert next_attempt_at(now=NOW, failures=1, lifetime=timedelta(days=90)) >= NOW + timedelta(
        hours=1
    )


def test_a_retry_is_never_scheduled_after_expiry_less_a_margin() -> None:
    not_after = NOW + timedelta(days=2)
    for failures in range(1, 15):
        when = next_attempt_at(
            now=NOW, failures=failures, lifetime=timedelta(days=90), not_after=not_after
        )
        assert when <= not_after - timedelta(hours=1)
    # past that moment, it is retried every first-retry delay, never days later
    late = not_after - timedelta(minutes=10)
    assert next_attempt_at(
        now=late, failures=12, lifetime=timedelta(days=90), not_after=not_after
    ) == late + timedelta(hours=1)


def test_the_servers_retry_after_still_comes_first() -> None:
    not_after = NOW + timedelta(hours=2)
    retry_after = NOW + timedelta(hours=3)
    when = next_attempt_at(
        now=NOW,
        failures=1,
        retry_after=retry_after,
        lifetime=timedelta(days=90),
        not_after=not_after,
    )
    assert when == retry_after


def test_a_90_second_certificate_that_fails_is_retried_and_renewed_before_it_lapses(
    tmp_path: Path,
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    extra = '[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\nfail_from_revision = 2\n'
    rt = runtime_for(make_home(tmp_path / "h", extra), clock)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(
        IssueSpec(
            name="brief",
            domains=("brief.example.com",),
            issuer="flaky",
            key_type=KeyType.EC_P256,
            validity=timedelta(hours=1),
            renew_before=timedelta(seconds=3570),
        )
    )
    lifecycle.advance("brief")

    def cert() -> ManagedCertificate:
        with rt.session() as session:
            return session.exec(select(ManagedCertificate)).one()

    expires = cert().not_after
    assert expires is not None
    clock.set(cert().renewal_due_at)  # type: ignore[arg-type]
    worker = reconciler(rt)
    for _ in range(3):  # the issuer keeps failing for a while
        assert "brief" in worker.tick().failed
        retry = cert().next_attempt_at
        assert retry is not None and retry < expires - timedelta(seconds=8)
        clock.set(retry)
    rt.issuer("flaky").failure = None  # type: ignore[attr-defined]  # the issuer recovers
    assert worker.tick().renewed == ["brief"]
    assert clock.now() < expires, "renewed before the old certificate lapsed"
