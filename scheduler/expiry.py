"""Expiry notices: once per certificate, serial and threshold, as expiry comes within reach."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from certman.durations import format_duration, parse_duration
from certman.inventory.tables import ManagedCertificate
from certman.service.runtime import Runtime
from scheduler.events import EXPIRING, KIND, certificate_event
from scheduler.notify import Notifier


def thresholds_of(rt: Runtime) -> list[timedelta]:
    """[notify] thresholds, widest first."""
    raw = rt.config.get("notify", "thresholds")
    return sorted((parse_duration(str(t), field="notify.thresholds") for t in raw), reverse=True)


def send_expiry_notices(rt: Runtime, notifier: Notifier, now: datetime) -> int:
    """Notify every certificate that crossed a threshold; returns how many went out.

    Only the tightest threshold crossed is sent: a service that was down while a
    certificate went from 30 to 3 days left sends one notice (3d), not four. A renewed
    certificate has a new serial, so its thresholds start over.
    """
    thresholds = thresholds_of(rt)
    if not notifier.enabled or not thresholds:
        return 0
    with rt.session() as session:
        rows = session.exec(
            select(ManagedCertificate)
            .where(col(ManagedCertificate.status).in_(["active", "failed"]))
            .where(col(ManagedCertificate.not_after) <= now + thresholds[0])
            .where(col(ManagedCertificate.not_after) > now)
        ).all()
    pending: dict[tuple[str, str], tuple[ManagedCertificate, timedelta]] = {}
    for cert in rows:
        assert cert.not_after is not None
        left = cert.not_after - now
        tightest = min(t for t in thresholds if left <= t)
        pending[(cert.name, f"{cert.serial}:{format_duration(tightest)}")] = (cert, left)
    for done in notifier.already_sent(KIND[EXPIRING], pending):
        del pending[done]
    sent = 0
    for (name, key), (cert, left) in pending.items():
        assert cert.not_after is not None
        payload = certificate_event(
            EXPIRING,
            cert,
            time=now,
            default_region=str(rt.config.get("aws", "region")),
            detail={
                "DaysToExpiry": left.days,
                "Threshold": key.rsplit(":", 1)[1],
                "Serial": cert.serial,
                "NotAfter": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
        sent += notifier.send_once(name, KIND[EXPIRING], key, payload)
    return sent
