"""`certman simulate`: the service's own reconcile tick, on a simulated clock and a copy.

The copy is a throwaway home in a temporary directory (scheduler.simulate_home): a SQLite
inventory holding the managed certificates' rows, a new local master key and a local
archive. Every issuer is replaced by an offline stand-in (scheduler.stand_in), targets and
notifications are off.
The real inventory is only read; its keys, archive, issuers and the network are never used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from certman.scheduler import stand_in
from certman.scheduler.notify import Notifier
from certman.scheduler.reconcile import Reconciler
from certman.scheduler.simulate_home import simulation_home
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from certman.clock import FrozenClock
from certman.config import Config
from certman.inventory.tables import ManagedCertificate
from certman.lifecycle.states import CertificateStatus
from certman.service.runtime import Runtime

MIN_STEP = timedelta(minutes=1)


@dataclass
class Timeline:
    renewals: dict[str, list[str]] = field(default_factory=dict)
    lapses: dict[str, str] = field(default_factory=dict)


def simulate(real: Runtime, *, days: int) -> dict[str, Any]:
    """Run the reconcile tick from now to ``days`` ahead, jumping from event to event."""
    from certman.inventory.database import make_engine, migrate
    from certman.keywrap.local import LocalMasterKey
    from certman.service.facts import corrected_rows

    with real.session() as session:
        certs = list(
            session.exec(
                select(ManagedCertificate)
                .where(ManagedCertificate.source == "managed")
                .order_by(col(ManagedCertificate.name))
            ).all()
        )
    corrected = corrected_rows(real)  # rows that drifted: what their certificates say
    for cert in certs:
        if cert.name in corrected:
            cert.sqlmodel_update(corrected[cert.name])
    issuers = {name: stand_in.describe(real, name) for name in {c.issuer for c in certs}}
    stand_in.add_given_lifetimes(issuers, certs)
    start = real.clock.now()
    end = start + timedelta(days=days)
    timeline = Timeline(renewals={c.name: [] for c in certs})
    stopping = threading.Event()  # set by SIGTERM or SIGINT: stop at the next safe point
    with simulation_home(stopping=stopping) as tmp:
        config = _throwaway_config(real.config, tmp, issuers)
        LocalMasterKey.create(config.master_key_path)
        engine = make_engine(config.database_url)
        migrate(engine)
        with Session(engine) as session:
            session.add_all(_copy(cert, start) for cert in certs)
            session.commit()
        engine.dispose()
        clock = FrozenClock(start)
        rt = Runtime(config=config, clock=clock)
        rt.registry.issuers[stand_in.TYPE] = stand_in.FACTORY
        reconciler = Reconciler(rt, holder="simulation", notifier=Notifier(rt), stopping=stopping)
        try:
            _run(rt, reconciler, clock, end, timeline)
            errors = _last_errors(rt)
        finally:
            rt.engine.dispose()
    return {
        "days": days,
        "from": _iso(start),
        "until": _iso(end),
        "lapsed": len(timeline.lapses),
        "certificates": [
            {
                "name": c.name,
                "issuer": c.issuer,
                "not_after": _iso(c.not_after) if c.not_after else None,
                "renewals": timeline.renewals[c.name],
                "lapsed": c.name in timeline.lapses,
                "lapses_at": timeline.lapses.get(c.name),
                "reason": errors.get(c.name) if c.name in timeline.lapses else None,
            }
            for c in certs
        ],
    }


def _run(
    rt: Runtime, reconciler: Reconciler, clock: FrozenClock, end: datetime, timeline: Timeline
) -> None:
    while clock.now() <= end and not reconciler.stopping.is_set():
        _record_lapses(rt, timeline)
        for name in reconciler.tick().renewed:
            timeline.renewals[name].append(_iso(clock.now()))
        upcoming = _next_event(rt)
        if upcoming is None or upcoming > end:
            break
        clock.set(max(upcoming, clock.now() + MIN_STEP))
    _record_lapses(rt, timeline)


def _throwaway_config(real: Config, home: Path, issuers: dict[str, dict[str, Any]]) -> Config:
    sections = {name: dict(keys) for name, keys in real.sections.items()}
    sections["database"] = {"url": f"sqlite:///{home / 'simulation.db'}"}
    sections["kms"] = {**sections["kms"], "type": "local", "master_key_file": "master.key"}
    sections["archive"] = {**sections["archive"], "type": "local", "path": "archive"}
    sections["notify"] = {**sections["notify"], "webhook": {"url": ""}, "sns": {"topic_arn": ""}}
    return Config(
        home=home,
        path=real.path,
        sections=sections,
        issuers=issuers,
        targets={},
        file_exists=real.file_exists,
    )


def _copy(cert: ManagedCertificate, now: datetime) -> ManagedCertificate:
    """The certificate as the simulation needs it: no revisions, keys, targets or claims."""
    fields = cert.model_dump(exclude={"id"})
    fields.update(
        targets="[]",
        reuse_key=False,
        claimed_by=None,
        claimed_until=None,
        latest_revision=cert.current_revision,
    )
    if not cert.current_revision and cert.status != CertificateStatus.FAILED:
        # never issued yet (or interrupted): the service would issue it at once
        fields.update(status=CertificateStatus.ACTIVE, renewal_due_at=now, next_attempt_at=None)
    return ManagedCertificate(**fields)


def _record_lapses(rt: Runtime, timeline: Timeline) -> None:
    """A certificate lapses when its expiry passes before a renewal replaced it."""
    now = rt.clock.now()
    with rt.session() as session:
        rows = session.exec(
            select(ManagedCertificate.name, ManagedCertificate.not_after)
            .where(
                col(ManagedCertificate.status).in_(
                    [CertificateStatus.ACTIVE, CertificateStatus.FAILED]
                )
            )
            .where(col(ManagedCertificate.not_after) < now)
        ).all()
    for name, not_after in rows:
        if not_after is not None:
            timeline.lapses.setdefault(name, _iso(not_after))


def _next_event(rt: Runtime) -> datetime | None:
    """The next moment anything can happen: a renewal falls due, a back-off ends, or a
    certificate that is not renewing normally expires (to record the lapse)."""
    now = rt.clock.now()
    c = ManagedCertificate
    with rt.session() as session:
        due = session.exec(
            select(func.min(c.renewal_due_at))
            .where(c.status == CertificateStatus.ACTIVE)
            .where(col(c.renewal_due_at) > now)
            .where(col(c.next_attempt_at).is_(None))
        ).one()
        retry = session.exec(
            select(func.min(c.next_attempt_at)).where(col(c.next_attempt_at) > now)
        ).one()
        expiry = session.exec(
            select(func.min(c.not_after))
            .where(col(c.not_after) >= now)
            .where(
                or_(col(c.status) != CertificateStatus.ACTIVE, col(c.next_attempt_at).is_not(None))
            )
        ).one()
    moments = [m for m in (due, retry, expiry + MIN_STEP if expiry else None) if m is not None]
    return min(moments) if moments else None


def _last_errors(rt: Runtime) -> dict[str, str]:
    with rt.session() as session:
        rows = session.exec(
            select(ManagedCertificate.name, ManagedCertificate.last_error).where(
                col(ManagedCertificate.last_error).is_not(None)
            )
        ).all()
    return {name: str(error) for name, error in rows}


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
