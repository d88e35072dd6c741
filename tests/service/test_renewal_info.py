"""Asking the CA again for renewal windows (RFC 9773): claimed in batches, bounded, stoppable."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from certman.scheduler import reconcile
from certman.scheduler.notify import Notifier
from sqlalchemy import update
from sqlmodel import col, select

from certman.clock import FrozenClock
from certman.contracts.issuer import (
    IssueRequest,
    IssueResponse,
    RenewalInfoRequest,
    RenewalInfoResponse,
)
from certman.inventory.tables import ManagedCertificate
from certman.pki import load_certificate
from certman.service.authorities import load_private_ca
from certman.service.renewal_info import FETCH_CLAIM, refresh_renewal_windows
from certman.service.runtime import Runtime
from tests.service.test_lifecycle import issue

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]


class AriIssuer:
    """The private CA, plus a renewal window far ahead; records whose window was asked."""

    def __init__(self, rt: Runtime, clock: FrozenClock, *, stop_after: int | None = None):
        self.inner = load_private_ca(rt, "default")
        self.name = "default"
        self.clock = clock
        self.asked: list[str] = []
        self.stop_after = stop_after

    def issue(self, request: IssueRequest) -> IssueResponse:
        return self.inner.issue(request)

    def renewal_info(self, request: RenewalInfoRequest) -> RenewalInfoResponse:
        cert = load_certificate(request.certificate_pem)
        self.asked.append(cert.subject.rfc4514_string())
        now = self.clock.now()
        return RenewalInfoResponse(
            window_start=now + timedelta(days=40),
            window_end=now + timedelta(days=41),
            retry_after=now + timedelta(hours=6),
        )

    def stopping(self) -> bool:
        return self.stop_after is not None and len(self.asked) >= self.stop_after


def due_for_ari(rt: Runtime, clock: FrozenClock, count: int) -> list[str]:
    """``count`` certificates whose next ARI fetch has passed, longest-waiting first."""
    names = [f"c{n}" for n in range(count)]
    for name in names:
        issue(rt, name)
    with rt.session() as session:
        for age, name in enumerate(reversed(names), 1):
            session.execute(
                update(TABLE)
                .where(TABLE.c.name == name)
                .values(ari_next_fetch_at=clock.now() - timedelta(minutes=age))
            )
        session.commit()
    return names


def still_due(rt: Runtime, now: datetime) -> list[str]:
    with rt.session() as session:
        return sorted(
            session.exec(
                select(ManagedCertificate.name).where(
                    col(ManagedCertificate.ari_next_fetch_at) <= now
                )
            ).all()
        )


def ari_issuer(rt: Runtime, clock: FrozenClock, **kwargs: int) -> AriIssuer:
    issuer = AriIssuer(rt, clock, **kwargs)
    rt._issuers["default"] = issuer  # type: ignore[assignment]
    return issuer


def test_at_most_limit_windows_are_asked_the_longest_waiting_first(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    names = due_for_ari(frozen_runtime, clock, 5)
    issuer = ari_issuer(frozen_runtime, clock)
    assert refresh_renewal_windows(frozen_runtime, batch=2, limit=3) == 3
    assert issuer.asked == [f"CN={n}.example.com" for n in names[:3]]
    assert still_due(frozen_runtime, clock.now()) == names[3:]
    with frozen_runtime.session() as session:
        asked = session.exec(
            select(ManagedCertificate).where(ManagedCertificate.name == "c0")
        ).one()
    assert asked.ari_next_fetch_at == clock.now() + timedelta(hours=6)
    assert asked.renewal_due_at is not None
    assert clock.now() + timedelta(days=40) <= asked.renewal_due_at
    assert refresh_renewal_windows(frozen_runtime) == 2, "the rest on the next call"
    assert still_due(frozen_runtime, clock.now()) == []


def test_a_stop_leaves_the_unasked_windows_due_at_once(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    names = due_for_ari(frozen_runtime, clock, 4)
    issuer = ari_issuer(frozen_runtime, clock, stop_after=1)
    assert refresh_renewal_windows(frozen_runtime, stopping=issuer.stopping) == 1
    assert issuer.asked == ["CN=c0.example.com"]
    # claimed with the batch, then given back: not held for FETCH_CLAIM
    assert still_due(frozen_runtime, clock.now()) == names[1:]
    with frozen_runtime.session() as session:
        held = session.exec(
            select(ManagedCertificate).where(
                ManagedCertificate.ari_next_fetch_at == clock.now() + FETCH_CLAIM
            )
        ).all()
    assert held == []


def test_a_service_tick_asks_at_most_its_share(
    frozen_runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = due_for_ari(frozen_runtime, clock, 3)
    issuer = ari_issuer(frozen_runtime, clock)
    monkeypatch.setattr(reconcile, "ARI_PER_TICK", 2)
    ticker = reconcile.Reconciler(frozen_runtime, holder="test", notifier=Notifier(frozen_runtime))
    ticker.tick()
    assert len(issuer.asked) == 2 and still_due(frozen_runtime, clock.now()) == names[2:]
    ticker.tick()
    assert len(issuer.asked) == 3 and still_due(frozen_runtime, clock.now()) == []
