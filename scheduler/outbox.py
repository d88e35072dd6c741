"""The notice outbox: each notice is committed before it is sent, then marked per channel.

A notice that no channel has taken yet survives a restart, a webhook that is down, an SNS
outage: it stays pending, with a back-off, until every channel it was recorded for has
accepted it. Delivery is at least once: channels' answers are marked per batch taken, so a
sender that dies before marking them re-sends that batch's notices after ``HOLD``
(receivers can drop repeats by the event's ``id``, which the payload keeps from the moment
it was recorded).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update

from certman.inventory.tables import Notification
from certman.service.renewal import next_attempt_at
from certman.service.runtime import Runtime

TABLE = Notification.__table__  # type: ignore[attr-defined]
# How long a sender holds the notices it took; others leave them alone meanwhile.
HOLD = timedelta(minutes=5)
# Retrying a channel that failed: 1 minute, doubling, at most an hour apart. Notices are
# time-sensitive (an alert hours late is little use); a channel's outage is short-lived.
RETRY_START = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)


@dataclass(frozen=True, kw_only=True)
class PendingNotice:
    id: int
    certificate: str
    kind: str
    body: str
    channels: tuple[str, ...]  # the channels still to deliver to
    failures: int


def _insert(rt: Runtime) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: a notice another instance recorded is left alone."""
    if rt.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(TABLE).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(TABLE).on_conflict_do_nothing()


def _row(
    now: datetime, certificate: str, kind: str, key: str, body: str, channels: Iterable[str]
) -> dict[str, Any]:
    return {
        "certificate": certificate[:255],
        "kind": kind,
        "key": key[:255],
        "created_at": now,
        "payload": body,
        "pending": ",".join(channels),
        "failures": 0,
        "next_attempt_at": now,
    }


def record(
    rt: Runtime,
    *,
    certificate: str,
    kind: str,
    key: str,
    body: str,
    channels: Collection[str],
) -> int | None:
    """Commit one notice for ``channels``; its id, or None when it was recorded before."""
    now = rt.clock.now()
    with rt.session() as session:
        new_id = session.execute(
            _insert(rt)
            .values(**_row(now, certificate, kind, key, body, channels))
            .returning(TABLE.c.id)
        ).scalar()
        session.commit()
    return int(new_id) if new_id is not None else None


def record_many(
    rt: Runtime, kind: str, notices: Iterable[tuple[str, str, str]], channels: Collection[str]
) -> None:
    """Commit (certificate, key, body) notices of one kind at once; known ones are skipped."""
    now = rt.clock.now()
    rows = [_row(now, name, kind, key, body, channels) for name, key, body in notices]
    if not rows:
        return
    with rt.session() as session:
        session.execute(_insert(rt), rows)
        session.commit()


def take(
    rt: Runtime, *, after: int, limit: int, only: Collection[int] | None = None
) -> list[PendingNotice]:
    """Hold up to ``limit`` due notices with an id above ``after``, oldest first.

    One compare-and-set UPDATE holds them, so two senders (two instances, or the service
    and a failing `certman renew`) never send one notice at once.
    """
    now = rt.clock.now()
    due = (
        select(TABLE.c.id)
        .where(TABLE.c.next_attempt_at.is_not(None))
        .where(TABLE.c.next_attempt_at <= now)
        .where(TABLE.c.id > after)
        .order_by(TABLE.c.id)
        .limit(limit)
    )
    if only is not None:
        due = due.where(TABLE.c.id.in_(list(only)))
    with rt.session() as session:
        ids = list(session.execute(due).scalars())
        if not ids:
            return []
        rows = session.execute(
            update(TABLE)
            .where(TABLE.c.id.in_(ids))
            .where(TABLE.c.next_attempt_at <= now)
            .values(next_attempt_at=now + HOLD)
            .returning(
                TABLE.c.id,
                TABLE.c.certificate,
                TABLE.c.kind,
                TABLE.c.payload,
                TABLE.c.pending,
                TABLE.c.failures,
            )
        ).all()
        session.commit()
    return sorted(
        (
            PendingNotice(
                id=row.id,
                certificate=row.certificate,
                kind=row.kind,
                body=row.payload or "{}",
                channels=tuple(c for c in row.pending.split(",") if c),
                failures=row.failures,
            )
            for row in rows
        ),
        key=lambda notice: notice.id,
    )


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What each channel did with one notice: took it, failed (why), or is no longer
    configured (dropped); a channel in none of them was not tried in this pass."""

    notice: PendingNotice
    delivered: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    @property
    def left(self) -> list[str]:
        """The channels the notice still waits for."""
        done = {*self.delivered, *self.dropped}
        return [c for c in self.notice.channels if c not in done]

    @property
    def sent(self) -> bool:
        """True when the last channel it waited for took it now."""
        return not self.left and bool(self.delivered)


def finish(rt: Runtime, outcomes: Sequence[Outcome]) -> None:
    """Mark what each channel did, for a batch of notices in one commit.

    A failed channel backs off; a channel not tried (it failed earlier in this pass) is due
    again at once, i.e. on the next pass; a dropped one (no longer configured) is given up.
    Marked per batch, not per notice: a sender that dies before this sends the batch's
    notices again after HOLD (at least once, repeats bounded by the batch).
    """
    now = rt.clock.now()
    # One executemany per set of columns changed (given up or sent, backing off, untried).
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for outcome in outcomes:
        values = _marks(outcome, now)
        by_columns.setdefault(tuple(sorted(values)), []).append(
            {"_id": outcome.notice.id, **values}
        )
    if not by_columns:
        return
    with rt.session() as session:
        connection = session.connection()
        for columns, params in by_columns.items():
            statement = (
                update(TABLE)
                .where(TABLE.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in columns})
            )
            connection.execute(statement, params)
        session.commit()


def _marks(outcome: Outcome, now: datetime) -> dict[str, Any]:
    notice, left = outcome.notice, outcome.left
    values: dict[str, Any] = {"pending": ",".join(left)}
    if not left:
        values.update(next_attempt_at=None, sent_at=now if outcome.delivered else None)
        values["last_error"] = (
            "; ".join(f"{c} is no longer configured" for c in outcome.dropped)
            if outcome.dropped
            else None
        )
    elif outcome.failed:
        failures = notice.failures + 1
        values.update(
            failures=failures,
            next_attempt_at=next_attempt_at(
                now=now, failures=failures, start=RETRY_START, cap=RETRY_MAX
            ),
            last_error="; ".join(f"{c}: {e}" for c, e in outcome.failed.items()),
        )
    else:
        values.update(next_attempt_at=now)
    return values


def release(rt: Runtime, notices: Iterable[PendingNotice]) -> None:
    """Give back held notices untried (the service is stopping): due again at once."""
    ids = [n.id for n in notices]
    if not ids:
        return
    with rt.session() as session:
        session.execute(
            update(TABLE).where(TABLE.c.id.in_(ids)).values(next_attempt_at=rt.clock.now())
        )
        session.commit()
