"""The inventory's facts checked against the certificates they describe (service.facts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from certman.clock import FrozenClock
from certman.inventory.tables import ManagedCertificate
from certman.service.facts import checked_renewal_due, due_by_their_certificates, find_drift
from certman.service.lifecycle import FACTS_EVERY, Lifecycle
from certman.service.runtime import Runtime
from tests.service.test_lifecycle import certificate, issue

FAR = datetime(2099, 1, 1, tzinfo=UTC)


def push_out(rt: Runtime, name: str, **values: object) -> None:
    with rt.session() as session:
        session.execute(
            update(ManagedCertificate).where(col(ManagedCertificate.name) == name).values(**values)
        )
        session.commit()


def test_an_untampered_inventory_has_no_drift(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime, "web")
    issue(frozen_runtime, "api", renew_before=timedelta(days=7))
    Lifecycle(frozen_runtime).renew("web", force=True)
    assert list(find_drift(frozen_runtime)) == []


def test_drift_is_found_across_pages(frozen_runtime: Runtime) -> None:
    for name in ("a", "b", "c", "d", "e"):
        issue(frozen_runtime, name)
    push_out(frozen_runtime, "b", serial="ff")
    push_out(frozen_runtime, "e", renewal_due_at=FAR)
    found = list(find_drift(frozen_runtime, page=2))
    assert [(d.name, [f.field for f in d.fields]) for d in found] == [
        ("b", ["serial"]),
        ("e", ["renewal_due_at"]),
    ]


def test_a_renewal_time_pushed_out_is_replaced_by_the_policys_for_the_decision(
    frozen_runtime: Runtime,
) -> None:
    issue(frozen_runtime, "web")
    honest = certificate(frozen_runtime, "web").renewal_due_at
    push_out(frozen_runtime, "web", renewal_due_at=FAR)
    with frozen_runtime.session() as session:
        cert = certificate(frozen_runtime, "web")
        assert checked_renewal_due(frozen_runtime, session, cert) == honest


def test_due_pages_offer_a_drifted_due_certificate_first_and_once(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    issue(frozen_runtime, "web", validity=timedelta(days=30))
    issue(frozen_runtime, "api", validity=timedelta(days=30))
    push_out(frozen_runtime, "web", not_after=FAR, renewal_due_at=FAR)
    clock.advance(timedelta(days=21))  # both due by their certificates; api by its row too
    assert due_by_their_certificates(frozen_runtime) == ["web"]
    pages = list(Lifecycle(frozen_runtime).due_pages())
    assert pages == [["web"], ["api"]]


def test_a_long_lived_lifecycle_looks_for_drift_at_most_every_facts_every(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    issue(frozen_runtime, "web", validity=timedelta(days=30))
    clock.advance(timedelta(days=21))
    lifecycle = Lifecycle(frozen_runtime)
    assert list(lifecycle.due_pages()) == [["web"]]
    push_out(frozen_runtime, "web", renewal_due_at=FAR)
    assert list(lifecycle.due_pages()) == [], "not looked again within FACTS_EVERY"
    clock.advance(FACTS_EVERY)
    assert list(lifecycle.due_pages()) == [["web"]]


def test_a_renewal_time_moved_earlier_is_not_drift(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    """Renewing sooner is safe (and how an operator renews a batch now); only a time later
    than the certificate and the policy allow can let a certificate lapse."""
    issue(frozen_runtime, "web")
    push_out(frozen_runtime, "web", renewal_due_at=clock.now() - timedelta(hours=1))
    assert list(find_drift(frozen_runtime)) == []
    later = certificate(frozen_runtime, "web").not_after
    assert later is not None
    push_out(frozen_runtime, "web", renewal_due_at=later - timedelta(days=1))
    (drift,) = find_drift(frozen_runtime)
    assert [f.field for f in drift.fields] == ["renewal_due_at"]
    assert drift.fields[0].certified.endswith("at the latest")
