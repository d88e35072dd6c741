"""Lifecycle.due_pages: what `renew --due` and the service work through, a page at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from certman.clock import FrozenClock
from certman.errors import IssuanceError
from certman.inventory.tables import ManagedCertificate
from certman.service.due import _due_rows
from certman.service.lifecycle import Lifecycle
from certman.service.runtime import Runtime
from tests.service.fakes import FakeIssuer
from tests.service.test_lifecycle import certificate, fake, issue, spec
from tests.sqlplan import query_plan


def due_together(rt: Runtime, clock: FrozenClock, names: list[str]) -> None:
    """Issue ``names`` and make them all due at the same second (ties in the keyset)."""
    for name in names:
        issue(rt, name)
    when = clock.now() + timedelta(days=1)
    with rt.session() as session:
        session.execute(
            update(ManagedCertificate)
            .where(col(ManagedCertificate.name).in_(names))
            .values(renewal_due_at=when)
        )
        session.commit()
    clock.set(when + timedelta(seconds=1))


def test_pages_offer_every_due_name_once_soonest_first_ties_by_id(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    names = [f"c{i}" for i in range(5)]
    due_together(frozen_runtime, clock, names)
    # nothing is renewed between pages (a dry run): the keyset still moves on and ends
    pages = list(Lifecycle(frozen_runtime).due_pages(page_size=2))
    assert pages == [["c0", "c1"], ["c2", "c3"], ["c4"]]


def test_a_name_that_stays_due_is_not_offered_again(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    """One held by another instance stays due; one renewed so short-lived that it is due
    again at once comes back due later than the page it was on. Neither is offered twice."""
    names = [f"c{i}" for i in range(4)]
    due_together(frozen_runtime, clock, names)
    offered: list[str] = []
    for page in Lifecycle(frozen_runtime).due_pages(page_size=2):
        offered += page
        if page == ["c0", "c1"]:
            with frozen_runtime.session() as session:  # c1 "renewed", due again at once
                session.execute(
                    update(ManagedCertificate)
                    .where(col(ManagedCertificate.name) == "c1")
                    .values(renewal_due_at=clock.now())
                )
                session.commit()
    assert offered == names


def test_unfinished_come_first_and_an_unfinished_due_one_comes_once(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    issuer: FakeIssuer = fake(frozen_runtime)
    lifecycle = issue(frozen_runtime, "a", issuer="fake")
    issue(frozen_runtime, "b", issuer="fake")
    clock.advance(timedelta(days=61))  # both due
    issuer.failure, issuer.fail_names = "retryable", ("b",)
    with pytest.raises(IssuanceError):
        lifecycle.renew("b")
    clock.advance(timedelta(hours=2))  # b's back-off has passed: unfinished, and still due
    assert lifecycle.unfinished() == ["b"]
    assert sorted(lifecycle.due()) == ["a", "b"]
    assert list(lifecycle.due_pages(page_size=1)) == [["b"], ["a"]]


def test_a_failed_first_issuance_is_not_offered(frozen_runtime: Runtime) -> None:
    fake(frozen_runtime, failure="permanent")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec("bad", issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("bad")
    assert certificate(frozen_runtime, "bad").status == "failed"
    assert list(lifecycle.due_pages()) == []


def test_a_later_page_starts_in_the_index_at_the_cursor(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    """The keyset condition is a range on (status, renewal_due_at), not a filter over every
    due row read from the start again on each page, and the order needs no sort."""
    now = clock.now()
    plan = query_plan(
        frozen_runtime,
        lambda session: _due_rows(session, now, limit=500, after=(now - timedelta(days=1), 7)),
    )
    assert "ix_certificate_status_due (status=? AND renewal_due_at>? AND renewal_due_at<?)" in plan
    assert "TEMP B-TREE" not in plan
