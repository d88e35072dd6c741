"""Leases: held for as long as a renewal runs, however long one step takes."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from certman.scheduler.notify import Notifier
from certman.scheduler.reconcile import Reconciler, TickReport

from certman.clock import SystemClock
from certman.contracts.build_context import BuildContext
from certman.contracts.issuer import Issuer, IssueRequest, IssueResponse
from certman.service.leases import Lease, claim, holder_of
from tests.scheduler.conftest import make_home, runtime_for
from tests.scheduler.processes import wait_for
from tests.scheduler.test_reconcile import issue

LEASE = timedelta(seconds=3)


class SlowIssuer:
    """Signs with the default CA once ``go`` is set: an issue step as long as a test likes."""

    started = threading.Event()
    go = threading.Event()

    def __init__(self, inner: Issuer) -> None:
        self.inner = inner

    def issue(self, request: IssueRequest) -> IssueResponse:
        if request.revision > 1:
            SlowIssuer.started.set()
            SlowIssuer.go.wait(60)
        return self.inner.issue(request)


def build_slow(context: BuildContext, settings: Mapping[str, Any]) -> SlowIssuer:
    return SlowIssuer(context.private_ca("default"))


def test_a_step_longer_than_the_lease_keeps_its_claim(tmp_path: Path) -> None:
    rt = runtime_for(make_home(tmp_path / "h", '[issuers.slow]\ntype = "slow"\n'), SystemClock())
    rt.registry.issuers["slow"] = "tests.scheduler.test_leases:build_slow"
    SlowIssuer.started.clear()
    SlowIssuer.go.clear()
    issue(rt, "web", issuer="slow", validity=3)
    worker = Reconciler(rt, holder="first", notifier=Notifier(rt), lease=LEASE)
    from sqlalchemy import update

    from certman.service.leases import TABLE

    with rt.session() as session:  # due now
        session.execute(update(TABLE).values(renewal_due_at=rt.clock.now() - timedelta(hours=1)))
        session.commit()
    reports: list[TickReport] = []
    ticking = threading.Thread(target=lambda: reports.append(worker.tick()))
    ticking.start()
    try:
        assert SlowIssuer.started.wait(30), "the renewal never reached the issuer"
        first = holder_of(rt, "web")
        assert first is not None and first[0] == "first"
        # Two leases long inside one step: the claim is kept alive the whole time.
        wait_for(
            lambda: rt.clock.now() > first[1] + LEASE,  # type: ignore[operator]
            30,
            "two leases to pass",
            every=0.2,
        )
        assert not claim(rt, "web", Lease(holder="second", duration=LEASE)), (
            "a second instance took a live renewal"
        )
        current = holder_of(rt, "web")
        assert current is not None and current[0] == "first"
        assert current[1] > first[1], "the lease was extended while the step ran"  # type: ignore[operator]
    finally:
        SlowIssuer.go.set()
        ticking.join(60)
    assert reports and reports[0].renewed == ["web"]
    assert holder_of(rt, "web") == (None, None), "given back when the renewal ended"
