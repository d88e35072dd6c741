"""What makes the audit chain tamper-evident: its HMAC key and a head anchored outside the database.

The key is random, sealed by the key wrapper (context purpose "audit-key") and stored in the
inventory, so write access to the database alone cannot recompute a MAC. The anchor file
(``<home>/audit.head``) records the last event this home appended, so deleting the newest
events, which leaves a shorter but consistent chain, is noticed too. With several instances
on one PostgreSQL database, each home anchors the events it appended.

The anchor carries its own MAC, under a key derived from the audit key, over the sequence
number and hash of the head: copying an older event's sequence and hash from the database
into it does not make a valid anchor. A home whose database is its own (SQLite in the home,
the default) appends every event of the chain, so once the chain holds keyed events its
anchor must exist: a missing one is reported, not taken for a home that never appended. On a
shared database, a home that never appended has no anchor; there the anchor lives outside
the reach of whoever holds only the database. Anchors written before the MAC (``{"seq",
"mac"}`` with the event's hash) are still read, and rewritten in the new form at the next
append.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import event
from sqlmodel import Session, col, select

from certman.contracts.key_wrapper import KeyWrapper
from certman.errors import IntegrityError
from certman.inventory.tables import AuditEvent, AuditKey
from certman.models import EncryptionContext, WrappedKey

log = logging.getLogger("certman.audit")

# Session.info key under which the runtime hands its AuditSeal to every session it opens.
AUDIT_SEAL = "certman.audit_seal"
_PENDING_HEAD = "certman.audit_pending_head"
_LISTENING = "certman.audit_listening"
ANCHOR_NAME = "audit.head"


# WrappedKey.extra field of a sealed audit key: the first event from which every anchor
# carries a MAC. It is part of the sealing context too, so it cannot be removed or moved.
ANCHORS_FROM = "anchors_from"


def audit_key_context(first_seq: int, anchors_from: int | None = None) -> EncryptionContext:
    """The sealed key is bound to the first event it covers (see AuditKey) and, once set, to
    the first event whose anchors carry a MAC."""
    certificate = "audit" if anchors_from is None else f"audit anchors-from {anchors_from}"
    return EncryptionContext(certificate=certificate, revision=first_seq, purpose="audit-key")


def sealed_audit_key_context(sealed: WrappedKey, first_seq: int) -> EncryptionContext:
    """The context ``sealed`` (an audit_key row's key) was sealed under."""
    recorded = sealed.extra.get(ANCHORS_FROM)
    try:
        anchors_from = None if recorded is None else int(recorded)
    except ValueError:
        raise IntegrityError(
            f"The sealed audit key records {ANCHORS_FROM}={recorded!r}, which certman never "
            "writes: audit_key was altered; investigate before trusting the audit trail."
        ) from None
    return audit_key_context(first_seq, anchors_from)


def with_anchors_from(sealed: WrappedKey, anchors_from: int | None) -> WrappedKey:
    if anchors_from is None:
        return sealed
    return replace(sealed, extra={**sealed.extra, ANCHORS_FROM: str(anchors_from)})


@dataclass(frozen=True, kw_only=True)
class ChainKey:
    first_seq: int
    secret: bytes = field(repr=False)
    # From this event on every anchor carries a MAC; None for a key sealed before that.
    anchors_from: int | None = None


ANCHOR_FORMAT = 2
_ANCHOR_LABEL = b"certman audit head anchor v2"


@dataclass(frozen=True, kw_only=True)
class Anchor:
    """The head of the chain as this home last appended it.

    ``mac`` is the anchor's own HMAC (see :func:`anchor_mac`); None for an anchor written
    before it had one, which holds only the head's hash.
    """

    seq: int
    hash: str
    mac: str | None = None


def anchor_mac(key: ChainKey, seq: int, head_hash: str) -> str:
    """HMAC-SHA256 over (seq, head hash) under a key derived from the audit key.

    A separate derived key (RFC 2104 HMAC as the PRF, with a fixed label) so that an anchor
    MAC can never be taken for an event's MAC or the other way round.
    """
    derived = hmac.digest(key.secret, _ANCHOR_LABEL, "sha256")
    message = json.dumps([ANCHOR_FORMAT, seq, head_hash], separators=(",", ":")).encode()
    return hmac.digest(derived, message, hashlib.sha256).hex()


class AuditSeal:
    """The audit key (unsealed once per process) and the home's head anchor.

    ``wrapper`` is called only when the key is first needed, so a command that appends
    nothing never builds the key wrapper. Safe to share between threads.
    """

    def __init__(
        self,
        wrapper: Callable[[], KeyWrapper],
        anchor_path: Path | None,
        *,
        anchor_required: bool = False,
    ) -> None:
        self._wrapper = wrapper
        self.anchor_path = anchor_path
        # True when this home appends every event of its database (SQLite in the home): a
        # keyed chain without an anchor then means the anchor was deleted.
        self.anchor_required = anchor_required
        self._lock = threading.Lock()
        self._keys: dict[tuple[int, str], bytes] = {}

    # --- the key --------------------------------------------------------------------------

    def stored_key(self, session: Session) -> ChainKey | None:
        """The chain key from the inventory, or None when no event was appended since 0006."""
        rows = session.exec(select(AuditKey).order_by(col(AuditKey.first_seq))).all()
        if not rows:
            return None
        if len(rows) > 1:
            raise IntegrityError(
                f"The inventory holds {len(rows)} audit keys where certman creates one; "
                "rows were added to audit_key: investigate before trusting the audit trail."
            )
        row = rows[0]
        sealed = WrappedKey.from_json(row.sealed_key)
        context = sealed_audit_key_context(sealed, row.first_seq)
        with self._lock:
            secret = self._keys.get((row.first_seq, row.sealed_key))
            if secret is None:
                secret = self._wrapper().unwrap(sealed, context)
                self._keys[(row.first_seq, row.sealed_key)] = secret
        anchors_from = sealed.extra.get(ANCHORS_FROM)
        return ChainKey(
            first_seq=row.first_seq,
            secret=secret,
            anchors_from=None if anchors_from is None else int(anchors_from),
        )

    def create_key(self, session: Session, first_seq: int, at: datetime) -> ChainKey:
        """A new random key covering events from ``first_seq`` on, added to the transaction;
        every anchor of its chain carries a MAC."""
        secret = secrets.token_bytes(32)
        session.add(
            AuditKey(
                first_seq=first_seq,
                sealed_key=self._seal(secret, first_seq, first_seq),
                created_at=at,
            )
        )
        return ChainKey(first_seq=first_seq, secret=secret, anchors_from=first_seq)

    def start_anchor_macs(self, session: Session, key: ChainKey, from_seq: int) -> ChainKey:
        """Seal ``key`` again, now bound to ``from_seq``: anchors in the older form, without
        a MAC, are refused for any later event. In the transaction that appends ``from_seq``."""
        row = session.get(AuditKey, key.first_seq)
        assert row is not None
        row.sealed_key = self._seal(key.secret, key.first_seq, from_seq)
        session.add(row)
        return replace(key, anchors_from=from_seq)

    def _seal(self, secret: bytes, first_seq: int, anchors_from: int) -> str:
        context = audit_key_context(first_seq, anchors_from)
        sealed = with_anchors_from(self._wrapper().wrap(secret, context), anchors_from).to_json()
        with self._lock:
            self._keys[(first_seq, sealed)] = secret
        return sealed

    # --- the anchor -----------------------------------------------------------------------

    def read_anchor(self) -> Anchor | None:
        path = self.anchor_path
        if path is None:
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if "v" not in doc:  # written before the anchor had a MAC: {"seq", "mac": hash}
                return Anchor(seq=int(doc["seq"]), hash=str(doc["mac"]))
            if doc["v"] != ANCHOR_FORMAT:
                raise ValueError(f"unknown format {doc['v']!r}")
            return Anchor(seq=int(doc["seq"]), hash=str(doc["hash"]), mac=str(doc["mac"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise IntegrityError(
                f"The audit head anchor {path} cannot be read ({e}); it was altered or "
                "damaged. Compare it with your backups before trusting the audit trail."
            ) from None

    def anchor_after_commit(self, session: Session, head: Anchor) -> None:
        """Record ``head`` in the anchor file once ``session`` commits (never before).

        If the head anchored now is no longer in the database (events were deleted or
        rewritten), the anchor is left as it is: it is the evidence `audit verify` reports.
        """
        if self.anchor_path is None:
            return
        try:
            anchored = self.read_anchor()
        except IntegrityError as e:
            log.warning("%s", e.message)
            return
        if anchored is not None:
            found = session.exec(
                select(AuditEvent.hash).where(AuditEvent.seq == anchored.seq)
            ).first()
            if found != anchored.hash:
                log.warning(
                    "The audit chain no longer holds event %d as %s recorded it; the anchor is "
                    "kept as evidence. Run `certman audit verify`.",
                    anchored.seq,
                    self.anchor_path,
                )
                return
        session.info[_PENDING_HEAD] = head
        if not session.info.get(_LISTENING):
            event.listen(session, "after_commit", self._write_pending)
            event.listen(session, "after_rollback", _discard_pending)
            session.info[_LISTENING] = True

    def _write_pending(self, session: Session) -> None:
        head = session.info.pop(_PENDING_HEAD, None)
        if head is not None:
            self.write_anchor(head)

    def write_anchor(self, head: Anchor) -> None:
        """Atomically replace the anchor with ``head`` unless it already holds a later one.

        An anchor in the older form (no MAC) is replaced even at the same head: upgraded.
        """
        from certman.fileio import exclusive_lock, write_private

        path = self.anchor_path
        assert path is not None
        doc = json.dumps(
            {"v": ANCHOR_FORMAT, "seq": head.seq, "hash": head.hash, "mac": head.mac},
            separators=(",", ":"),
        )
        try:
            # Threads of one process, then processes sharing the home (flock is per process).
            with self._lock, exclusive_lock(path.with_name(path.name + ".lock")):
                current = self.read_anchor()
                if current is not None and (
                    current.seq > head.seq or (current.seq == head.seq and current.mac)
                ):
                    return
                write_private(path, doc.encode() + b"\n")
        except (OSError, IntegrityError) as e:
            # The change is committed already; failing it now would misreport it.
            log.warning("Could not update the audit head anchor %s: %s", path, e)


def _discard_pending(session: Session) -> None:
    session.info.pop(_PENDING_HEAD, None)


def seal_of(session: Session) -> AuditSeal:
    """The AuditSeal the runtime attached to ``session`` (Runtime.session)."""
    seal = session.info.get(AUDIT_SEAL)
    if not isinstance(seal, AuditSeal):
        raise RuntimeError(
            "This session has no audit seal; open sessions with Runtime.session() to append "
            "or verify audit events."
        )
    return seal
