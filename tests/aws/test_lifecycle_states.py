"""The transition table is exactly what the code does: every transition that issuing,
renewing (with an ACM target, on moto), failing at each step and revoking make, recorded."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import certman.deploy.rollout
import certman.service.bulk  # noqa: F401
from certman.config import load_config
from certman.contracts.issuer import IssueRequest, IssueResponse
from certman.errors import CertmanError, DeployError, IssuanceError
from certman.lifecycle import states
from certman.lifecycle.states import IN_FLIGHT, TRANSITIONS, RevisionState
from certman.models import RevocationReason
from certman.service import steps
from certman.service.home import init_home
from certman.service.lifecycle import Lifecycle
from certman.service.revocation import revoke_certificate
from certman.service.runtime import Runtime
from tests.aws.conftest import Aws, aws_config, write_config
from tests.service.test_lifecycle import revisions, spec

S = RevisionState
Made = set[tuple[str, str]]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Made:
    """Every (from, to) that goes through `transition`, in every module that calls it."""
    seen: Made = set()
    real = states.transition

    def recording(rev: Any, to: RevisionState, now: Any, *, name: str) -> None:
        before = str(rev.state)
        real(rev, to, now, name=name)
        seen.add((before, str(to)))

    for module in list(sys.modules.values()):
        if module is not states and getattr(module, "transition", None) is real:
            monkeypatch.setattr(module, "transition", recording)
    return seen


class Ordering:
    """The private CA behind an ACME-like front: for names starting "acme-" it places an
    order, finds it invalid and places another (each checkpointed) before it signs, or
    fails there for the names in ``fail`` (retryably or not, as the value says)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fail: dict[str, bool] = {}

    def issue(self, request: IssueRequest) -> IssueResponse:
        if request.name.startswith("acme-") and request.checkpoint is not None:
            request.checkpoint(f"https://acme.example/order/{request.name}/1")
            request.checkpoint(f"https://acme.example/order/{request.name}/2")
            if request.name in self.fail:
                retryable = self.fail[request.name]
                raise IssuanceError("The order failed on purpose.", retryable=retryable)
        return self.inner.issue(request)


def failing_at(
    monkeypatch: pytest.MonkeyPatch, state: RevisionState, *, retryable: bool
) -> Callable[[], None]:
    """Make the step run from ``state`` fail (IMPORTED: the deploy step fails once ACM holds
    the certificate, so the revision stays imported); returns the undo."""
    at = S.ARCHIVED if state == S.IMPORTED else state
    real = steps.NEXT_STEP[at]

    def step(rt: Runtime, work: steps.Work) -> None:
        if state == S.IMPORTED:
            real(rt, work)  # committed at the rollout's checkpoint, then the step fails
        raise DeployError("The step failed on purpose.", retryable=retryable)

    monkeypatch.setitem(steps.NEXT_STEP, at, step)
    return lambda: monkeypatch.setitem(steps.NEXT_STEP, at, real)


@pytest.fixture
def rt(home: Path, aws: Aws) -> Iterator[Runtime]:
    """KMS, S3 and two ACM targets in two regions: each import is a wave of its own."""
    aws.kms_key()
    aws.bucket()
    west = '[targets.acm-west]\ntype = "acm"\nregion = "us-west-2"\n'
    write_config(home, aws_config(aws) + "\n" + west)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    runtime = Runtime(config=load_config(home, home / "certman.toml"))
    yield runtime
    runtime.engine.dispose()


def test_the_table_is_every_transition_the_code_makes(
    rt: Runtime, made: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    ordering = Ordering(rt.issuer("default"))
    monkeypatch.setattr(rt, "issuer", lambda name: ordering)
    lifecycle = Lifecycle(rt)

    def issue(name: str, targets: tuple[str, ...] = ("acm", "acm-west")) -> None:
        lifecycle.plan(spec(name, targets=targets, reuse_key=True))
        assert lifecycle.advance(name).state == S.ACTIVE

    def renew_until(name: str, state: RevisionState, *, retryable: bool) -> None:
        if state == S.ORDERED:
            ordering.fail[name] = retryable
        else:
            undo = failing_at(monkeypatch, state, retryable=retryable)
        with pytest.raises(CertmanError, match="on purpose"):
            lifecycle.renew(name, force=True)
        if state != S.ORDERED:
            undo()
        assert revisions(rt, name)[-1].state == (state if retryable else S.FAILED)

    # issue, renew (the active one superseded), revoke, renew from a revoked one, and
    # revoke for keyCompromise: every revision holding the key is revoked, once more
    # for the one revoked before (its reason upgraded).
    issue("acme-web")
    lifecycle.renew("acme-web", force=True)
    revoke_certificate(rt, "acme-web", RevocationReason.SUPERSEDED)
    lifecycle.renew("acme-web", force=True)
    revoke_certificate(rt, "acme-web", RevocationReason.KEY_COMPROMISE)
    assert [r.state for r in revisions(rt, "acme-web")] == [S.REVOKED] * 3
    issue("plain", targets=())  # nothing to deploy: archived, then deployed at once
    # an order that was not ready is resumed: ordered (again), then issued
    issue("acme-resumed")
    renew_until("acme-resumed", S.ORDERED, retryable=True)
    del ordering.fail["acme-resumed"]
    assert lifecycle.advance("acme-resumed").state == S.ACTIVE
    for state in sorted(IN_FLIGHT, key=list(S).index):
        prefix = ("acme-" if state == S.ORDERED else "") + state.replace("_", "-")
        # a failure that is retryable leaves the renewal where it is; revoking the key
        # then revokes its certificate, or stops it (abandoned) when it has none yet
        issue(f"{prefix}-stop")
        renew_until(f"{prefix}-stop", state, retryable=True)
        revoke_certificate(rt, f"{prefix}-stop", RevocationReason.KEY_COMPROMISE)
        # a permanent one marks it failed; it may hold a certificate with the revoked key
        issue(f"{prefix}-fail")
        renew_until(f"{prefix}-fail", state, retryable=False)
        revoke_certificate(rt, f"{prefix}-fail", RevocationReason.KEY_COMPROMISE)

    allowed = {(str(here), str(to)) for here, tos in TRANSITIONS.items() for to in tos}
    assert made - allowed == set(), "a transition the table lacks (it would have raised)"
    assert allowed - made == set(), "a transition in the table that no code makes"
