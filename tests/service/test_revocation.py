"""Revocation: with keyCompromise the key is revoked, at the CA too, and never certified again."""

from __future__ import annotations

import pytest

from certman.contracts.issuer import RevokeRequest, RevokeResponse
from certman.lifecycle.states import RevisionState
from certman.models import RevocationReason
from certman.pki import certificate_facts
from certman.service.authorities import load_private_ca
from certman.service.lifecycle import Lifecycle
from certman.service.revocation import revoke_certificate
from certman.service.runtime import Runtime
from tests.service.fakes import FakeIssuer
from tests.service.test_lifecycle import (
    certificate,
    certificate_public_key,
    issue,
    revisions,
    sealed_public_key,
)

S = RevisionState


class RevokingIssuer(FakeIssuer):
    """Issues through the private CA and revokes like an ACME CA (SupportsRevoke)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.revoked: list[tuple[str, RevocationReason]] = []

    def revoke(self, request: RevokeRequest) -> RevokeResponse:
        serial = certificate_facts(request.certificate_pem).serial
        self.revoked.append((serial, request.reason))
        return RevokeResponse(revoked_at=request.now)


@pytest.fixture
def ca_like_acme(frozen_runtime: Runtime) -> RevokingIssuer:
    issuer = RevokingIssuer(load_private_ca(frozen_runtime, "default"), name="acme")
    frozen_runtime._issuers["acme"] = issuer
    return issuer


class Stop(Exception):
    """Raised by an observer to leave a revision where it is, as a crash would."""


def test_key_compromise_revokes_each_revision_with_the_key_at_the_ca(
    frozen_runtime: Runtime, ca_like_acme: RevokingIssuer
) -> None:
    lifecycle = issue(frozen_runtime, issuer="acme", reuse_key=True)
    lifecycle.renew("web", force=True)
    first, second = revisions(frozen_runtime, "web")
    outcome = revoke_certificate(frozen_runtime, "web", RevocationReason.KEY_COMPROMISE)
    assert ca_like_acme.revoked == [
        (second.serial, RevocationReason.KEY_COMPROMISE),
        (first.serial, RevocationReason.KEY_COMPROMISE),
    ]
    assert [(r.revision, r.shares_key) for r in outcome.revoked] == [(2, False), (1, True)]
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.REVOKED, S.REVOKED]


def test_a_failing_ca_leaves_the_inventory_unchanged_and_a_rerun_finishes(
    frozen_runtime: Runtime, ca_like_acme: RevokingIssuer
) -> None:
    from certman.errors import IssuanceError

    lifecycle = issue(frozen_runtime, issuer="acme", reuse_key=True)
    lifecycle.renew("web", force=True)
    calls = {"n": 0}
    revoke = ca_like_acme.revoke

    def flaky(request: RevokeRequest) -> RevokeResponse:
        calls["n"] += 1
        if calls["n"] == 2:
            raise IssuanceError("The CA is unavailable.", retryable=True)
        return revoke(request)

    ca_like_acme.revoke = flaky  # type: ignore[method-assign]
    with pytest.raises(IssuanceError):
        revoke_certificate(frozen_runtime, "web", RevocationReason.KEY_COMPROMISE)
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.SUPERSEDED, S.ACTIVE]
    assert certificate(frozen_runtime, "web").status == "active"
    revoke_certificate(frozen_runtime, "web", RevocationReason.KEY_COMPROMISE)
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.REVOKED, S.REVOKED]


def test_key_compromise_abandons_a_renewal_that_sealed_the_same_key(
    frozen_runtime: Runtime,
) -> None:
    issue(frozen_runtime, reuse_key=True)

    def stop_when_sealed(_name: str, number: int, state: RevisionState) -> None:
        if number == 2 and state == S.KEY_SEALED:
            raise Stop

    with pytest.raises(Stop):
        Lifecycle(frozen_runtime, observers=[stop_when_sealed]).renew("web", force=True)
    first, pending = revisions(frozen_runtime, "web")
    assert sealed_public_key(frozen_runtime, "web", pending) == certificate_public_key(first)

    outcome = revoke_certificate(frozen_runtime, "web", RevocationReason.KEY_COMPROMISE)
    assert outcome.abandoned == (2,)
    assert any("revision 2 in progress held the same key" in line for line in outcome.lines())
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.REVOKED, S.FAILED]

    renewal = Lifecycle(frozen_runtime).renew("web")
    assert (renewal.revision, renewal.state) == (3, S.ACTIVE)
    assert any("keyCompromise" in note for note in renewal.notes)
    third = revisions(frozen_runtime, "web")[2]
    assert certificate_public_key(third) != certificate_public_key(first)


def test_a_renewal_with_a_fresh_key_in_progress_is_left_alone(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime)  # no reuse_key: the renewal seals a new key

    def stop_when_sealed(_name: str, number: int, state: RevisionState) -> None:
        if number == 2 and state == S.KEY_SEALED:
            raise Stop

    with pytest.raises(Stop):
        Lifecycle(frozen_runtime, observers=[stop_when_sealed]).renew("web", force=True)
    outcome = revoke_certificate(frozen_runtime, "web", RevocationReason.KEY_COMPROMISE)
    assert outcome.abandoned == ()
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.REVOKED, S.KEY_SEALED]
    assert Lifecycle(frozen_runtime).advance("web").state == S.ACTIVE
