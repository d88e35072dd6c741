"""The audit trail: append-only events, each chained to the one before it by an HMAC.

The MAC key is sealed by the key wrapper (audit_seal.py), so whoever can write to the
database but cannot unseal keys cannot forge, edit or re-chain events; the head anchored
outside the database catches the deletion of the newest ones. Events appended before the
key existed (databases older than migration 0006) keep their plain SHA-256 links.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from certman.errors import CertmanError
from certman.inventory.audit_seal import Anchor, ChainKey, anchor_mac, seal_of
from certman.inventory.bulkwrite import insert_many
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
    keyed_from: int | None = None  # first HMAC'd event; None when there is no audit key
    anchored: int | None = None  # the head recorded in this home's anchor, when there is one


@cache
def current_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


# The encodings the chain's MACs cover: json.dumps with these options, one encoder each
# instead of one per call (the bulk path appends a thousand events at once).
_BODY_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DETAILS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _event_body(
    *, prev_hash: str, seq: int, at: datetime, action: str, subject: str, actor: str, details: str
) -> bytes:
    content = _BODY_JSON.encode([seq, at.isoformat(), action, subject, actor, details])
    return (prev_hash + content).encode()


def event_hash(
    *, prev_hash: str, seq: int, at: datetime, action: str, subject: str, actor: str, details: str
) -> str:
    """The unkeyed SHA-256 link of events appended before the audit key existed."""
    return hashlib.sha256(
        _event_body(
            prev_hash=prev_hash,
            seq=seq,
            at=at,
            action=action,
            subject=subject,
            actor=actor,
            details=details,
        )
    ).hexdigest()


def event_mac(
    key: bytes,
    *,
    prev_hash: str,
    seq: int,
    at: datetime,
    action: str,
    subject: str,
    actor: str,
    details: str,
) -> str:
    """HMAC-SHA256 (RFC 2104) of the same content under the audit key."""
    message = _event_body(
        prev_hash=prev_hash,
        seq=seq,
        at=at,
        action=action,
        subject=subject,
        actor=actor,
        details=details,
    )
    return hmac.digest(key, message, "sha256").hex()


def _link(key: ChainKey | None, row: AuditEvent) -> str:
    """What ``row``'s hash must be: its MAC when the key covers it, else its SHA-256."""
    assert row.at is not None
    fields = dict(
        prev_hash=row.prev_hash,
        seq=row.seq,
        at=row.at,
        action=row.action,
        subject=row.subject,
        actor=row.actor,
        details=row.details,
    )
    if key is not None and row.seq >= key.first_seq:
        return event_mac(key.secret, **fields)  # type: ignore[arg-type]
    return event_hash(**fields)  # type: ignore[arg-type]


def append_events(session: Session, at: datetime, events: Iterable[EventSpec]) -> None:
    """Append ``events`` in order, in the caller's transaction (so they commit with the change).

    Each event's MAC covers the one before it, so appends must not interleave. On
    PostgreSQL, where several `certman serve` instances write at once, a transaction-level
    advisory lock (released at commit or rollback) makes the next writer wait and then read
    the new last event; SQLite already allows only one writer at a time. The first append
    after migration 0006 creates the audit key; once the transaction commits, the new head
    is written to this home's anchor.
    """
    seal = seal_of(session)
    specs = list(events)
    if not specs:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    elif dialect == "sqlite":
        # The driver begins a transaction only at the first write: a session whose first
        # statement is this append would read the last event outside it, and two processes
        # would both take the next seq. A write that changes nothing takes the write lock
        # (waiting for the other writer) before the last event is read.
        session.execute(text("UPDATE audit_event SET seq = seq WHERE 0"))
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    key = seal.stored_key(session) or seal.create_key(session, seq + 1, at)
    if key.anchors_from is None:  # a key from before anchors had a MAC: from now on
        key = seal.start_anchor_macs(session, key, seq + 1)
    actor = current_actor()
    rows = []
    for spec in specs:
        seq += 1
        details = _DETAILS_JSON.encode(dict(spec.details))
        digest = event_mac(
            key.secret,
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
    # One executemany: the bulk path appends a thousand events at once.
    insert_many(session, AuditEvent.__table__, rows)  # type: ignore[attr-defined]
    seal.anchor_after_commit(session, Anchor(seq=seq, hash=prev, mac=anchor_mac(key, seq, prev)))


def append_event(session: Session, at: datetime, action: str, subject: str, **details: Any) -> None:
    append_events(session, at, [EventSpec(action=action, subject=subject, details=details)])


def verify_chain(session: Session, batch: int = 5000) -> ChainCheck:
    """Walk every event: sequence numbers contiguous from 1, links and MACs intact, and the
    head this home anchored still in the chain."""
    seal = seal_of(session)
    try:
        key = seal.stored_key(session)
        anchor = seal.read_anchor()
    except CertmanError as e:
        return ChainCheck(ok=False, events=0, head=GENESIS, message=e.message)
    expected_seq, prev, count = 1, GENESIS, 0
    at_anchor: str | None = None

    def broken(message: str) -> ChainCheck:
        return ChainCheck(
            ok=False,
            events=count,
            head=prev,
            message=message,
            keyed_from=key.first_seq if key else None,
            anchored=anchor.seq if anchor else None,
        )

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
                return broken(
                    f"Audit event {expected_seq} is missing (next is {row.seq}): "
                    "events were deleted."
                )
            if row.prev_hash != prev:
                return broken(
                    f"Audit event {row.seq} does not link to event {row.seq - 1}: "
                    "the chain was edited."
                )
            if not hmac.compare_digest(_link(key, row), row.hash):
                return broken(_edited(row, key))
            if anchor is not None and row.seq == anchor.seq:
                at_anchor = row.hash
            prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    if key is not None and key.first_seq > count:
        # The key is created in the transaction of the first event it covers.
        return broken(
            f"The audit key covers events from {key.first_seq} on but the chain ends at "
            f"event {count}: the newest events were deleted."
        )
    where = seal.anchor_path
    if key is not None and key.anchors_from is not None and key.anchors_from > count:
        return broken(
            f"The audit key records anchors from event {key.anchors_from} on but the chain "
            f"ends at event {count}: the newest events were deleted."
        )
    if anchor is None and seal.anchor_required and key is not None and count >= key.first_seq:
        # This home appended every keyed event, and each append wrote the anchor.
        return broken(
            f"The audit head anchor {where} is missing although this home appended events "
            f"{key.first_seq}-{count} under the audit key: it was deleted, perhaps with the "
            "newest events. Restore it from a backup before trusting the audit trail."
        )
    if anchor is not None:
        if anchor.seq > count:
            return broken(
                f"The audit chain ends at event {count} but {where} records event "
                f"{anchor.seq} as its head: the newest events were deleted."
            )
        if at_anchor is None or not hmac.compare_digest(at_anchor, anchor.hash):
            return broken(
                f"Audit event {anchor.seq} is not the one {where} recorded as its head: "
                "the chain was rewritten."
            )
        anchors_from = key.anchors_from if key is not None else None
        if anchor.mac is None and anchors_from is not None and anchor.seq >= anchors_from:
            return broken(
                f"The audit head anchor {where} is in the older form, without a MAC, but "
                f"records event {anchor.seq}, appended when every anchor carried one "
                f"(from event {anchors_from} on): it was forged, perhaps to hide the "
                "deletion of the newest events."
            )
        if anchor.mac is not None and (
            key is None
            or not hmac.compare_digest(anchor_mac(key, anchor.seq, anchor.hash), anchor.mac)
        ):
            return broken(
                f"The audit head anchor {where} does not carry a valid MAC under the audit "
                "key: it was written by someone who does not hold the key, perhaps to hide "
                "the deletion of the newest events."
            )
    return ChainCheck(
        ok=True,
        events=count,
        head=prev,
        message=_intact(count, prev, key, anchor, seal.anchor_path),
        keyed_from=key.first_seq if key else None,
        anchored=anchor.seq if anchor else None,
    )


def _edited(row: AuditEvent, key: ChainKey | None) -> str:
    what = f"Audit event {row.seq} ({row.action} {row.subject}) was edited"
    if key is not None and row.seq >= key.first_seq:
        return f"{what}: its MAC does not match its content."
    if key is None:
        # Unkeyed events only: either the database predates 0006, or the key was deleted.
        return f"{what}: its hash does not match its content, and the database holds no audit key."
    return f"{what}: its hash does not match its content."


def _intact(
    count: int, head: str, key: ChainKey | None, anchor: Anchor | None, where: object
) -> str:
    message = f"{count} audit events, chain intact; head {head[:16]}"
    if count and key is None:
        message += (
            f". Events 1-{count} predate the audit key and have plain SHA-256 links: anyone "
            "with write access to the database could rebuild them (the next event appended "
            "creates the key)"
        )
    elif key is not None and key.first_seq > 1:
        # The first keyed event's MAC covers the link to them: edits made since are caught.
        message += (
            f". Events 1-{key.first_seq - 1} predate the audit key and have plain SHA-256 "
            f"links: an edit made to them before event {key.first_seq} was keyed would not show"
        )
    if anchor is not None:
        message += f"; event {anchor.seq} anchored in {where}"
    return message + "."
