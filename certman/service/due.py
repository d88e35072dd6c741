"""What to renew now: unfinished revisions, then due certificates, read a page at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus, RevisionState
from certman.service.leases import holder_gone, this_host_pattern

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

_IN_FLIGHT = [s.value for s in RevisionState if s.in_flight]


def due_names(session: Session, now: datetime, *, limit: int) -> list[str]:
    """The renewal query (indexed on status, renewal_due_at): due now, back-off passed."""
    return [name for name, _, _ in _due_rows(session, now, limit=limit, after=None)]


def unfinished_names(session: Session, now: datetime) -> list[str]:
    """Names with a revision in flight that nobody works on (a crash or a retryable failure
    left it there), whose back-off has passed."""
    return [
        row[0] for row in _unfinished_rows(session, now, limit=None, after_id=0) if _abandoned(row)
    ]


def due_pages(runtime: Runtime, *, page_size: int) -> Iterator[list[str]]:
    """Every certificate to work on now, a page at a time, each name at most once.

    First the unfinished ones (by id), then the due ones, soonest first. Each page is read
    after the one before was handled, and starts after the last row of that one (keyset
    paging on renewal_due_at, id), so what stayed due (held by another instance, or
    skipped) is not read again and the pages end. A name is never offered twice: not an
    unfinished renewal of an active certificate (due too), nor one renewed so short-lived
    that it is due again at once (it waits for the next pass).
    """
    offered: set[str] = set()
    last_id = 0
    while True:
        with runtime.session() as session:
            unfinished = _unfinished_rows(
                session, runtime.clock.now(), limit=page_size, after_id=last_id
            )
        if not unfinished:
            break
        last_id = unfinished[-1][1]
        names = [row[0] for row in unfinished if _abandoned(row)]
        offered.update(names)
        if names:
            yield names
    after: tuple[datetime, int] | None = None
    while True:
        with runtime.session() as session:
            due = _due_rows(session, runtime.clock.now(), limit=page_size, after=after)
        if not due:
            return
        _, due_at, cert_id = due[-1]
        after = (due_at, cert_id)
        page = [name for name, _, _ in due if name not in offered]
        if page:
            offered.update(page)
            yield page


def _due_rows(
    session: Session, now: datetime, *, limit: int, after: tuple[datetime, int] | None
) -> Sequence[Any]:
    query = (
        select(ManagedCertificate.name, ManagedCertificate.renewal_due_at, ManagedCertificate.id)
        .where(ManagedCertificate.status == CertificateStatus.ACTIVE)
        .where(col(ManagedCertificate.renewal_due_at) <= now)
        .where(
            col(ManagedCertificate.next_attempt_at).is_(None)
            | (col(ManagedCertificate.next_attempt_at) <= now)
        )
    )
    if after is not None:
        due_at, cert_id = after
        # (renewal_due_at, id) > after, written so the index range starts at due_at
        query = query.where(col(ManagedCertificate.renewal_due_at) >= due_at).where(
            (col(ManagedCertificate.renewal_due_at) > due_at)
            | (col(ManagedCertificate.id) > cert_id)
        )
    return session.exec(
        query.order_by(col(ManagedCertificate.renewal_due_at), col(ManagedCertificate.id)).limit(
            limit
        )
    ).all()


def _abandoned(row: Any) -> bool:
    """An in-flight revision is interrupted only when nobody holds a live lease on it: the
    lease ran out, or its holder was a process of this host that no longer runs."""
    _, _, holder, live = row
    return not live or holder_gone(holder)


def _unfinished_rows(
    session: Session, now: datetime, *, limit: int | None, after_id: int
) -> Sequence[Any]:
    """(name, id, claimed_by, lease is live) of in-flight revisions not leased by another
    host: a live lease of this host is checked against its process by _abandoned."""
    live = col(ManagedCertificate.claimed_until).is_not(None) & (
        col(ManagedCertificate.claimed_until) >= now
    )
    query = (
        select(
            ManagedCertificate.name,
            ManagedCertificate.id,
            ManagedCertificate.claimed_by,
            live,
        )
        .join(Revision, col(Revision.certificate_id) == col(ManagedCertificate.id))
        .where(col(Revision.number) == col(ManagedCertificate.latest_revision))
        .where(col(Revision.state).in_(_IN_FLIGHT))
        .where(
            col(ManagedCertificate.next_attempt_at).is_(None)
            | (col(ManagedCertificate.next_attempt_at) <= now)
        )
        .where(~live | col(ManagedCertificate.claimed_by).like(this_host_pattern()))
        .where(col(ManagedCertificate.id) > after_id)
        .order_by(col(ManagedCertificate.id))
    )
    return session.exec(query if limit is None else query.limit(limit)).all()
