"""The revision state machine: the states, a certificate's status, and the one transition.

Every change of a revision's ``state`` goes through `transition`, which checks `TRANSITIONS`
and stamps ``updated_at``; a new revision starts `RevisionState.PLANNED`. This module
imports only `certman.errors`, so every floor (the inventory, the steps, bulk issuance, the
rollout) may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from certman.errors import StateTransitionError


class RevisionState(StrEnum):
    """The persisted steps of one issuance (DESIGN.md, "The lifecycle")."""

    PLANNED = "planned"
    KEY_SEALED = "key_sealed"
    ORDERED = "ordered"
    ISSUED = "issued"
    ARCHIVED = "archived"
    IMPORTED = "imported"
    DEPLOYED = "deployed"
    ACTIVE = "active"
    # terminal states outside the happy path
    FAILED = "failed"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"

    @property
    def in_flight(self) -> bool:
        return self in IN_FLIGHT


class CertificateStatus(StrEnum):
    """Where a certificate stands (the ``status`` column); what `certman list --status`
    filters on."""

    PENDING = "pending"  # first revision not active yet
    ACTIVE = "active"
    FAILED = "failed"
    REVOKED = "revoked"
    EXPIRED = "expired"


S = RevisionState

IN_FLIGHT: frozenset[RevisionState] = frozenset(
    {S.PLANNED, S.KEY_SEALED, S.ORDERED, S.ISSUED, S.ARCHIVED, S.IMPORTED, S.DEPLOYED}
)
# Where a revision may go from each state, and who moves it there:
#   steps.py       planned→key_sealed→issued→archived→deployed→active, active→superseded;
#                  ordered→issued (an order resumed)
#   lifecycle.py   key_sealed/ordered→ordered (an ACME order URL, stored as it exists; a
#                  new order replaces an invalid one)
#   steps.py       archived/imported→imported (the rollout reports each verified wave of
#                  ACM imports, a wave of its own)
#   failures.py    any in-flight state→failed (a permanent failure)
#   revocation.py  a certified state→revoked (again: a reason upgraded to keyCompromise);
#                  an in-flight state→failed (a renewal holding a key revoked meanwhile)
# Keyed by the stored string too: a StrEnum hashes and compares as its value.
TRANSITIONS: Mapping[str, frozenset[RevisionState]] = {
    S.PLANNED: frozenset({S.KEY_SEALED, S.FAILED}),
    S.KEY_SEALED: frozenset({S.ORDERED, S.ISSUED, S.FAILED}),
    S.ORDERED: frozenset({S.ORDERED, S.ISSUED, S.FAILED}),
    S.ISSUED: frozenset({S.ARCHIVED, S.FAILED, S.REVOKED}),
    S.ARCHIVED: frozenset({S.IMPORTED, S.DEPLOYED, S.FAILED, S.REVOKED}),
    S.IMPORTED: frozenset({S.IMPORTED, S.DEPLOYED, S.FAILED, S.REVOKED}),
    S.DEPLOYED: frozenset({S.ACTIVE, S.FAILED, S.REVOKED}),
    S.ACTIVE: frozenset({S.SUPERSEDED, S.REVOKED}),
    S.SUPERSEDED: frozenset({S.REVOKED}),
    S.FAILED: frozenset({S.REVOKED}),  # a failed revision may hold a certificate
    S.REVOKED: frozenset({S.REVOKED}),
}


class HasState(Protocol):
    """A revision: the inventory row, or the plain record bulk issuance builds."""

    number: int
    state: str
    updated_at: datetime | None


def transition(rev: HasState, to: RevisionState, now: datetime, *, name: str) -> None:
    """Move revision ``rev`` of certificate ``name`` to state ``to`` at ``now``.

    Raises StateTransitionError, naming the revision and both states, when `TRANSITIONS`
    does not allow it; then nothing is changed.
    """
    allowed = TRANSITIONS.get(rev.state)
    if allowed is None or to not in allowed:
        may = " or ".join(s for s in S if s in allowed) if allowed else "nothing (it is unknown)"
        raise StateTransitionError(
            f"Revision {rev.number} of {name!r} cannot go from {rev.state} to {to} (from "
            f"{rev.state} it may only become {may}); nothing was changed."
        )
    rev.state = to
    rev.updated_at = now
