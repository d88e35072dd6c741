"""Expiry notices: once per certificate, serial and threshold, as expiry comes within reach."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from certman.scheduler.events import EXPIRING, KIND, certificate_event
from certman.scheduler.notify import Notifier
from sqlalchemy import exists, func
from sqlmodel import col, select

from certman.durations import format_duration, parse_duration
from certman.inventory.tables import ManagedCertificate, Notification
from certman.lifecycle.states import CertificateStatus
from certman.service.runtime import Runtime

CHUNK = 500


def thresholds_of(rt: Runtime) -> list[timedelta]:
    """[notify] thresholds, widest first."""
    raw = rt.config.get("notify", "thresholds")
    return sorted((parse_duration(str(t), field="notify.thresholds") for t in raw), reverse=True)


def record_expiry_notices(rt: Runtime, notifier: Notifier, now: datetime) -> int:
    """Record a notice for every certificate that crossed a threshold; returns how many.

    Only the tightest threshold crossed counts: a service that was down while a
    certificate went from 30 to 3 days left records one notice (3d), not four. A renewed
    certificate has a new serial, so its thresholds start over. The query returns only
    certificates without their notice yet, so a tick with nothing new costs one indexed
    probe per certificate in the window and loads no rows.
    """
    thresholds = thresholds_of(rt)
    if not notifier.enabled or not thresholds:
        return 0
    recorded = 0
    bands = zip(thresholds, [*thresholds[1:], timedelta(0)], strict=True)
    for widest, tighter in bands:  # not_after in (now + tighter, now + widest]: "widest" crossed
        label = format_duration(widest)
        ids = _without_notice(rt, now + tighter, now + widest, label)
        for start in range(0, len(ids), CHUNK):
            notices = [
                _notice(rt, cert, now, label)
                for cert in _certificates(rt, ids[start : start + CHUNK])
            ]
            notifier.record_many(KIND[EXPIRING], notices)
            recorded += len(notices)
    return recorded


def _without_notice(rt: Runtime, after: datetime, until: datetime, label: str) -> list[int]:
    c, n = ManagedCertificate, Notification
    key = func.coalesce(c.serial, "") + f":{label}"
    notice = (
        select(n.id)
        .where(n.certificate == c.name)
        .where(n.kind == KIND[EXPIRING])
        .where(n.key == key)
    )
    with rt.session() as session:
        return [
            int(i)
            for i in session.exec(
                select(c.id)
                .where(col(c.status).in_([CertificateStatus.ACTIVE, CertificateStatus.FAILED]))
                .where(col(c.not_after) > after)
                .where(col(c.not_after) <= until)
                .where(~exists(notice))
            ).all()
            if i is not None
        ]


def _certificates(rt: Runtime, ids: list[int]) -> list[ManagedCertificate]:
    with rt.session() as session:
        return list(
            session.exec(select(ManagedCertificate).where(col(ManagedCertificate.id).in_(ids)))
        )


def _notice(
    rt: Runtime, cert: ManagedCertificate, now: datetime, label: str
) -> tuple[str, str, dict[str, Any]]:
    assert cert.not_after is not None
    payload = certificate_event(
        EXPIRING,
        cert,
        time=now,
        default_region=str(rt.config.get("aws", "region")),
        detail={
            "DaysToExpiry": (cert.not_after - now).days,
            "Threshold": label,
            "Serial": cert.serial,
            "NotAfter": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    return cert.name, f"{cert.serial or ''}:{label}", payload
