"""Who renews what: an expiring lease on each certificate row, so one instance renews it."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update

from certman.inventory.tables import ManagedCertificate
from certman.service.runtime import Runtime

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]


class ClaimLost(Exception):
    """Another instance took the certificate over (this one's lease had expired)."""


def instance_id() -> str:
    """host:pid:random, unique per running service and readable in the inventory."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(rt: Runtime, name: str, holder: str, lease: timedelta) -> bool:
    """Lease ``name`` to ``holder`` unless another instance holds a live lease on it.

    One compare-and-set UPDATE decides, so two instances never both win. On PostgreSQL
    the row is picked with ``FOR UPDATE SKIP LOCKED``: an instance never waits for a row
    another one is claiming at that moment, it moves on to the next certificate (SQLite
    has one writer at a time and ignores the clause). A crashed instance's lease expires
    and the next tick of any instance claims the certificate and resumes its revision.
    """
    now = rt.clock.now()
    claimable = (
        select(TABLE.c.id)
        .where(TABLE.c.name == name)
        .where(
            or_(
                TABLE.c.claimed_until.is_(None),
                TABLE.c.claimed_until < now,
                TABLE.c.claimed_by == holder,
            )
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    with rt.session() as session:
        result = session.execute(
            update(TABLE)
            .where(TABLE.c.id == claimable)
            .values(claimed_by=holder, claimed_until=now + lease)
        )
        session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def extend(rt: Runtime, name: str, holder: str, lease: timedelta) -> None:
    """Renew the lease after each committed step; ClaimLost if another instance has it now."""
    now = rt.clock.now()
    with rt.session() as session:
        result = session.execute(
            update(TABLE)
            .where(TABLE.c.name == name)
            .where(TABLE.c.claimed_by == holder)
            .values(claimed_until=now + lease)
        )
        session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ClaimLost(name)


def release(rt: Runtime, name: str, holder: str) -> None:
    with rt.session() as session:
        session.execute(
            update(TABLE)
            .where(TABLE.c.name == name)
            .where(TABLE.c.claimed_by == holder)
            .values(claimed_by=None, claimed_until=None)
        )
        session.commit()


def release_all(rt: Runtime, holder: str) -> None:
    """Give back every lease at shutdown, so other instances need not wait for expiry."""
    with rt.session() as session:
        session.execute(
            update(TABLE)
            .where(TABLE.c.claimed_by == holder)
            .values(claimed_by=None, claimed_until=None)
        )
        session.commit()
