"""Who renews what: an expiring lease on each certificate row, so one instance renews it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import or_, select, update

from certman.errors import OperationError, one_line
from certman.inventory.tables import ManagedCertificate
from certman.service.runtime import Runtime

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]
log = logging.getLogger("certman.serve")


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


class LeaseKeeper:
    """Extends a held lease every third of ``lease``, from its own thread, while the
    renewal it covers runs: a step longer than the lease (a slow ACME order, a rollout
    waiting on a load balancer) never lets a second instance start the same step.

    A lease only runs out when this process stops writing for a whole ``lease`` (it was
    killed, or lost the database), which is what a lease is for. ``lost`` turns true when
    another instance holds the certificate now; the renewal checks it after each step.
    """

    def __init__(self, rt: Runtime, name: str, holder: str, lease: timedelta) -> None:
        self.rt, self.name, self.holder, self.lease = rt, name, holder, lease
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, name=f"certman-lease-{name}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                extend(self.rt, self.name, self.holder, self.lease)
            except ClaimLost:
                self.lost = True
                return
            except Exception as e:  # the database is away: try again; the lease has slack
                log.warning("%s: could not extend the claim (%s)", self.name, one_line(e))


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


def holder_of(rt: Runtime, name: str) -> tuple[str | None, object] | None:
    """Who holds ``name`` now and until when (None, None when nobody; None: no such name)."""
    with rt.session() as session:
        row = session.execute(
            select(TABLE.c.claimed_by, TABLE.c.claimed_until).where(TABLE.c.name == name)
        ).first()
    return (row[0], row[1]) if row is not None else None


class CertificateBusy(OperationError):
    """Another instance (a running `certman serve`, or another CLI) is renewing it."""


@contextmanager
def held(rt: Runtime, name: str, holder: str, lease: timedelta) -> Iterator[None]:
    """Hold ``name`` for a manual renewal, exactly as the service does for its own.

    Refuses (CertificateBusy) when another instance holds a live lease, so `certman renew`
    and `certman serve` never renew one certificate at the same time.
    """
    if not claim(rt, name, holder, lease):
        current = holder_of(rt, name)
        if current is None:  # no such certificate: the caller reports it as usual
            yield
            return
        other, until = current
        raise CertificateBusy(
            f"Certificate {name!r} is being renewed by {other} (lease until {until}); "
            "wait for it to finish, or run again after the lease ends."
        )
    try:
        with LeaseKeeper(rt, name, holder, lease):
            yield
    finally:
        release(rt, name, holder)
