"""The audit trail: append-only events, each hashed together with the one before it."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from certman.inventory.tables import AuditEvent

GENESIS = "0" * 64
# pg_advisory_xact_lock key that serialises appends ("audit" in ASCII).
AUDIT_LOCK_KEY = 0x6175646974


@dataclass(frozen=True, kw_only=True)
class EventSpec:
    action: str
    subject: str
    details: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    message: str


@cache
def current_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def event_hash(
    *, prev_hash: str, seq: int, at: datetime, action: str, subject: str, actor: str, details: str
) -> str:
    body = json.dumps(
        [seq, at.isoformat(), action, subject, actor, details],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append_events(session: Session, at: datetime, events: Iterable[EventSpec]) -> None:
    """Append ``events`` in order, in the caller's transaction (so they commit with the change).

    Each event's hash covers the one before it, so appends must not interleave. On
    PostgreSQL, where several `certman serve` instances write at once, a transaction-level
    advisory lock (released at commit or rollback) makes the next writer wait and then read
    the new last event; SQLite already allows only one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    actor = current_actor()
    rows = []
    for spec in events:
        seq += 1
        details = json.dumps(dict(spec.details), sort_keys=True, separators=(",", ":"), default=str)
        digest = event_hash(
            prev_hash=prev,
            seq=seq,
            at=at,
            action=spec.action,
            subject=spec.subject,
            actor=actor,
            details=details,
        )
        rows.append(
            {
                "seq": seq,
                "at": at,
                "action": spec.action,
                "subject": spec.subject,
                "actor": actor,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        # Core executemany: the bulk path appends a thousand events at once.
        session.execute(insert(AuditEvent), rows)


def append_event(session: Session, at: datetime, action: str, subject: str, **details: Any) -> None:
    append_events(session, at, [EventSpec(action=action, subject=subject, details=details)])


def verify_chain(session: Session, batch: int = 5000) -> ChainCheck:
    """Walk every event: sequence numbers contiguous from 1, links and hashes intact."""
    expected_seq, prev, count = 1, GENESIS, 0
    while True:
        rows = session.exec(
            select(AuditEvent)
            .where(AuditEvent.seq >= expected_seq)
            .order_by(col(AuditEvent.seq))
            .limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return ChainCheck(
                    ok=False,
                    events=count,
                    head=prev,
                    message=(
                        f"Audit event {expected_seq} is missing (next is {row.seq}): "
                        "events were deleted."
                    ),
                )
            if row.prev_hash != prev:
                return ChainCheck(
                    ok=False,
                    events=count,
                    head=prev,
                    message=(
                        f"Audit event {row.seq} does not link to event {row.seq - 1}: "
                        "the chain was edited."
                    ),
                )
            assert row.at is not None
            digest = event_hash(
                prev_hash=row.prev_hash,
                seq=row.seq,
                at=row.at,
                action=row.action,
                subject=row.subject,
                actor=row.actor,
                details=row.details,
            )
            if digest != row.hash:
                return ChainCheck(
                    ok=False,
                    events=count,
                    head=prev,
                    message=(
                        f"Audit event {row.seq} ({row.action} {row.subject}) was edited: "
                        "its hash does not match its content."
                    ),
                )
            prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    return ChainCheck(
        ok=True,
        events=count,
        head=prev,
        message=f"{count} audit events, chain intact; head {prev[:16]}.",
    )
