"""The revision state machine: the table, and the one transition every state change takes."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certman.errors import StateTransitionError
from certman.lifecycle.states import IN_FLIGHT, TRANSITIONS, RevisionState, transition
from certman.service.lifecycle import Lifecycle
from certman.service.runtime import Runtime
from tests.service.test_lifecycle import certificate, revisions, spec

S = RevisionState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Rev:
    number: int
    state: str
    updated_at: datetime | None = None


def test_an_illegal_transition_names_the_revision_and_both_states() -> None:
    rev = Rev(number=2, state="active", updated_at=T0)
    with pytest.raises(StateTransitionError) as raised:
        transition(rev, S.ORDERED, T0 + timedelta(hours=1), name="web")
    message = raised.value.message
    assert message.startswith("Revision 2 of 'web' cannot go from active to ordered")
    assert "superseded or revoked" in message
    assert raised.value.exit_code == 1
    assert (rev.state, rev.updated_at) == ("active", T0), "nothing was changed"


def test_an_unknown_stored_state_is_refused() -> None:
    with pytest.raises(StateTransitionError, match="from lost to failed"):
        transition(Rev(number=1, state="lost"), S.FAILED, T0, name="web")


def test_a_transition_sets_the_state_and_stamps_the_time() -> None:
    rev = Rev(number=1, state="planned", updated_at=T0)  # as stored: a plain string
    transition(rev, S.KEY_SEALED, T0 + timedelta(minutes=5), name="web")
    assert rev.state == "key_sealed"
    assert rev.updated_at == T0 + timedelta(minutes=5)


def test_the_table_has_every_state_and_any_in_flight_state_may_fail() -> None:
    assert set(TRANSITIONS) == set(S)
    assert all(S.FAILED in TRANSITIONS[state] for state in IN_FLIGHT)
    assert {s for s in S if s.in_flight} == IN_FLIGHT
    # Nothing returns to the path once it has left it; a revision never goes back.
    order = [S.PLANNED, S.KEY_SEALED, S.ORDERED, S.ISSUED, S.ARCHIVED, S.IMPORTED]
    order += [S.DEPLOYED, S.ACTIVE]
    for here in order:
        later = set(order[order.index(here) :]) | {S.FAILED, S.SUPERSEDED, S.REVOKED}
        assert TRANSITIONS[here] <= later, here


def test_no_product_module_assigns_a_revision_state_but_the_transition() -> None:
    """Every `x.state = ...` (or `a, x.state = ...`) outside certman/lifecycle/states.py."""
    offenders = []
    for root in ("certman", "ca", "acme_client", "scheduler"):
        for path in (REPO / root).rglob("*.py"):
            if path == REPO / "certman" / "lifecycle" / "states.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    for each in names:
                        if isinstance(each, ast.Attribute) and each.attr == "state":
                            offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_a_late_order_checkpoint_cannot_move_an_issued_revision_back(
    frozen_runtime: Runtime,
) -> None:
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec("web"))
    lifecycle.advance("web")
    checkpoint = lifecycle._order_checkpoint("web", 1)
    with pytest.raises(StateTransitionError, match="Revision 1 of 'web' cannot go from active"):
        checkpoint("https://acme.example/order/late")
    (rev,) = revisions(frozen_runtime, "web")
    assert rev.state == S.ACTIVE and rev.order_url is None
    assert certificate(frozen_runtime, "web").status == "active"
