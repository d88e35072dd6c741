"""Who advances what: an expiring lease on each certificate row, held by every command that
advances a revision (issue, bulk-issue, renew, serve, keys rotate, revoke, delete).

One mechanism on SQLite and PostgreSQL: a compare-and-set UPDATE of ``claimed_by`` and
``claimed_until`` takes a lease, and every step's commit carries a fenced UPDATE of the
same row (``WHERE claimed_by = holder``), so a process whose lease was taken over can
never commit a step of the revision again. A lease runs out when its holder stops writing
for a whole lease (it was killed, or lost the database); one held by a process of this host
that no longer exists is taken over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update

from certman.errors import OperationError, one_line
from certman.inventory.tables import ManagedCertificate

if TYPE_CHECKING:
    from sqlmodel import Session

    from certman.service.runtime import Runtime

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]
DEFAULT_LEASE = timedelta(minutes=10)
log = logging.getLogger("certman.leases")


class CertificateBusy(OperationError):
    """Another process (a running `certman serve`, or another command) holds the certificate."""


class LeaseLost(OperationError):
    """Another process took the certificate over: this one's lease had run out."""

    retryable = True


@dataclass(frozen=True, kw_only=True)
class Lease:
    """Who holds leases (``host:pid:random``, prefixed by the kind of process) and for how long
    each lasts after its last renewal."""

    holder: str
    duration: timedelta = DEFAULT_LEASE


def instance_id() -> str:
    """host:pid:random, unique per running process and readable in the inventory."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_for(rt: Runtime, kind: str | None = None) -> Lease:
    """A new holder for this process, leasing for ``[service] lease``."""
    holder = instance_id() if kind is None else f"{kind}:{instance_id()}"
    return Lease(holder=holder, duration=rt.config.duration("service", "lease") or DEFAULT_LEASE)


def holder_gone(holder: str | None) -> bool:
    """True when ``holder`` names a process of this host that no longer exists.

    Holders are ``[kind:]host:pid:random``; anything else (a holder of another host, or one
    not made by instance_id) is never judged gone: its lease has to run out.
    """
    if not holder:
        return False
    parts = holder.rsplit(":", 3)
    if len(parts) < 3:
        return False
    host, pid_text = parts[-3], parts[-2]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user
        return False
    return _zombie(pid)


def this_host_pattern() -> str:
    """A LIKE pattern matching the holders of this host (and maybe a few others: the
    caller checks each with holder_gone)."""
    return f"%{socket.gethostname()}:%"


def _zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still has a pid: it holds nothing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _free(now: datetime, holder: str, gone: Collection[str]) -> Any:
    """The rows ``holder`` may lease now: free, expired, its own, or a dead process's."""
    clauses = [
        TABLE.c.claimed_until.is_(None),
        TABLE.c.claimed_until < now,
        TABLE.c.claimed_by == holder,
    ]
    if gone:
        clauses.append(TABLE.c.claimed_by.in_(list(gone)))
    return or_(*clauses)


def claim(rt: Runtime, name: str, lease: Lease) -> bool:
    """Lease ``name`` unless another process holds a live lease on it.

    One compare-and-set UPDATE decides, so two processes never both win. On PostgreSQL
    the row is picked with ``FOR UPDATE SKIP LOCKED``: a process never waits for a row
    another one is claiming at that moment (SQLite has one writer at a time and ignores
    the clause). False for an unknown name too (holder_of tells the two apart).
    """
    now = rt.clock.now()
    with rt.session() as session:
        current = session.execute(
            select(TABLE.c.claimed_by).where(TABLE.c.name == name)
        ).scalar_one_or_none()
        gone = [current] if current and current != lease.holder and holder_gone(current) else []
        claimable = (
            select(TABLE.c.id)
            .where(TABLE.c.name == name)
            .where(_free(now, lease.holder, gone))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        result = session.execute(
            update(TABLE)
            .where(TABLE.c.id == claimable)
            .values(claimed_by=lease.holder, claimed_until=now + lease.duration)
        )
        session.commit()
    if gone and result.rowcount == 1:  # type: ignore[attr-defined]
        log.info("%s: took over the lease of %s, which no longer runs", name, gone[0])
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def claim_ids(session: Session, ids: Collection[int], lease: Lease, now: datetime) -> set[int]:
    """Lease every row of ``ids`` that is free, in the caller's transaction; the ids leased."""
    if not ids:
        return set()
    holders = session.execute(
        select(TABLE.c.claimed_by)
        .where(TABLE.c.id.in_(list(ids)))
        .where(TABLE.c.claimed_by.is_not(None))
        .distinct()
    ).scalars()
    gone = [h for h in holders if h != lease.holder and holder_gone(h)]
    session.execute(
        update(TABLE)
        .where(TABLE.c.id.in_(list(ids)))
        .where(_free(now, lease.holder, gone))
        .values(claimed_by=lease.holder, claimed_until=now + lease.duration)
    )
    return set(
        session.execute(
            select(TABLE.c.id)
            .where(TABLE.c.id.in_(list(ids)))
            .where(TABLE.c.claimed_by == lease.holder)
        ).scalars()
    )


def fence(session: Session, ids: Collection[int], lease: Lease, now: datetime) -> None:
    """In the transaction of a step's commit: renew the leases on ``ids``, or LeaseLost.

    The UPDATE holds the rows until the commit, so no other process can take a lease in
    between: a step is committed only by the holder of its certificate's lease.
    """
    if not ids:
        return
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.id.in_(list(ids)))
        .where(TABLE.c.claimed_by == lease.holder)
        .values(claimed_until=now + lease.duration)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        session.rollback()
        raise LeaseLost(
            f"Another process took over {len(ids) - result.rowcount} of the certificates "  # type: ignore[attr-defined]
            "this one was working on (its lease had run out); that process finishes them."
        )


def extend_all(rt: Runtime, lease: Lease) -> int:
    """Renew every lease ``lease.holder`` holds; how many rows it holds."""
    now = rt.clock.now()
    with rt.session() as session:
        result = session.execute(
            update(TABLE)
            .where(TABLE.c.claimed_by == lease.holder)
            .values(claimed_until=now + lease.duration)
        )
        session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def release(rt: Runtime, name: str, lease: Lease) -> None:
    with rt.session() as session:
        session.execute(
            update(TABLE)
            .where(TABLE.c.name == name)
            .where(TABLE.c.claimed_by == lease.holder)
            .values(claimed_by=None, claimed_until=None)
        )
        session.commit()


def release_ids(session: Session, ids: Collection[int], lease: Lease) -> None:
    """Give back the leases on ``ids``, in the caller's transaction."""
    if ids:
        session.execute(
            update(TABLE)
            .where(and_(TABLE.c.id.in_(list(ids)), TABLE.c.claimed_by == lease.holder))
            .values(claimed_by=None, claimed_until=None)
        )


def release_all(rt: Runtime, holder: str) -> None:
    """Give back every lease at the end, so other processes need not wait for expiry."""
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


def held_leases(rt: Runtime) -> list[tuple[str, str, datetime]]:
    """(name, holder, until) of every live lease, for `certman doctor`."""
    now = rt.clock.now()
    with rt.session() as session:
        rows = session.execute(
            select(TABLE.c.name, TABLE.c.claimed_by, TABLE.c.claimed_until)
            .where(TABLE.c.claimed_by.is_not(None))
            .where(TABLE.c.claimed_until >= now)
            .order_by(TABLE.c.name)
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def busy(rt: Runtime, name: str) -> CertificateBusy:
    current = holder_of(rt, name)
    other, until = current if current is not None else (None, None)
    who = other or "another process"
    when = f" (lease until {until:%Y-%m-%dT%H:%M:%SZ})" if isinstance(until, datetime) else ""
    return CertificateBusy(
        f"Certificate {name!r} is being worked on by {who}{when}; "
        "wait for it to finish, or run again after the lease ends."
    )


class LeaseKeeper:
    """Renews every lease of a holder each third of the lease, from its own thread, while
    the work they cover runs: a step longer than the lease (a slow ACME order, a rollout
    waiting on a load balancer) never lets a second process start the same step."""

    def __init__(self, rt: Runtime, lease: Lease) -> None:
        self.rt, self.lease = rt, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, name=f"certman-lease-{lease.holder}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease.duration.total_seconds() / 3):
            try:
                extend_all(self.rt, self.lease)
            except Exception as e:  # the database is away: try again; the lease has slack
                log.warning("could not extend the leases of %s: %s", self.lease.holder, one_line(e))


@contextmanager
def held(rt: Runtime, name: str, lease: Lease) -> Iterator[None]:
    """Hold ``name`` while the caller works on it, as the lifecycle does for its steps.

    Refuses (CertificateBusy) when another process holds a live lease. An unknown name is
    left to the caller to report as usual.
    """
    if not claim(rt, name, lease):
        if holder_of(rt, name) is None:
            yield
            return
        raise busy(rt, name)
    try:
        with LeaseKeeper(rt, lease):
            yield
    finally:
        release(rt, name, lease)
