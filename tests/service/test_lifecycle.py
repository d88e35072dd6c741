"""Issuance and renewal through the lifecycle, with a clock that only moves when told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import col, select

from certman.clock import FrozenClock
from certman.errors import AlreadyExistsError, IssuanceError, ValidationError
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.lifecycle.states import RevisionState
from certman.models import KeyType, WrappedKey
from certman.pki import load_certificate, load_private_key_der, public_key_der
from certman.service.authorities import load_private_ca
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.renewal import renewal_due_at
from certman.service.runtime import Runtime
from certman.service.steps import key_context
from tests.service.fakes import FakeIssuer

S = RevisionState


def spec(name: str = "web", **changes: object) -> IssueSpec:
    values: dict[str, object] = {
        "name": name,
        "domains": (f"{name}.example.com",),
        "issuer": "default",
        "key_type": KeyType.EC_P256,
        "validity": timedelta(days=90),
    }
    values.update(changes)
    return IssueSpec(**values)  # type: ignore[arg-type]


def issue(rt: Runtime, name: str = "web", **changes: object) -> Lifecycle:
    lifecycle = Lifecycle(rt)
    lifecycle.plan(spec(name, **changes))
    lifecycle.advance(name)
    return lifecycle


def certificate(rt: Runtime, name: str) -> ManagedCertificate:
    with rt.session() as session:
        return session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).one()


def revisions(rt: Runtime, name: str) -> list[Revision]:
    cert = certificate(rt, name)
    with rt.session() as session:
        return list(
            session.exec(
                select(Revision)
                .where(Revision.certificate_id == cert.id)
                .order_by(col(Revision.number))
            ).all()
        )


def sealed_public_key(rt: Runtime, name: str, rev: Revision) -> bytes:
    assert rev.sealed_key is not None
    der = rt.key_wrapper.unwrap(WrappedKey.from_json(rev.sealed_key), key_context(name, rev.number))
    return public_key_der(load_private_key_der(der).public_key())


def certificate_public_key(rev: Revision) -> bytes:
    assert rev.certificate_pem is not None
    return public_key_der(load_certificate(rev.certificate_pem.encode()).public_key())


def fake(rt: Runtime, **settings: object) -> FakeIssuer:
    issuer = FakeIssuer(load_private_ca(rt, "default"), **settings)  # type: ignore[arg-type]
    rt._issuers["fake"] = issuer
    return issuer


def past_renewal(rt: Runtime, clock: FrozenClock, name: str) -> None:
    due = certificate(rt, name).renewal_due_at
    assert due is not None
    clock.set(due + timedelta(seconds=1))


# --- first issuance -----------------------------------------------------------------------


def test_issue_makes_revision_one_active(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime)
    cert = certificate(frozen_runtime, "web")
    (rev,) = revisions(frozen_runtime, "web")
    assert cert.status == "active"
    assert (cert.current_revision, cert.latest_revision) == (1, 1)
    assert rev.number == 1
    assert rev.state == S.ACTIVE
    assert cert.serial == rev.serial
    assert rev.archive_location and rev.archive_sha256


def test_issued_certificate_is_for_the_sealed_key(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime)
    (rev,) = revisions(frozen_runtime, "web")
    assert sealed_public_key(frozen_runtime, "web", rev) == certificate_public_key(rev)


def test_issue_records_renewal_due_at_from_the_certificate(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime, renew_before=timedelta(days=10))
    cert = certificate(frozen_runtime, "web")
    assert cert.not_before and cert.not_after
    assert cert.renewal_due_at == renewal_due_at(
        not_before=cert.not_before, not_after=cert.not_after, renew_before=timedelta(days=10)
    )
    assert cert.renewal_due_at == cert.not_after.replace(microsecond=0) - timedelta(days=10)


def test_observers_see_every_committed_state_in_order(frozen_runtime: Runtime) -> None:
    seen: list[tuple[str, int, RevisionState]] = []
    lifecycle = Lifecycle(frozen_runtime, observers=[lambda *event: seen.append(event)])
    lifecycle.plan(spec())
    lifecycle.advance("web")
    assert [state for _, _, state in seen] == [
        S.PLANNED,
        S.KEY_SEALED,
        S.ISSUED,
        S.ARCHIVED,
        S.DEPLOYED,
        S.ACTIVE,
    ]
    assert {(name, number) for name, number, _ in seen} == {("web", 1)}


def test_advance_of_an_active_certificate_changes_nothing(frozen_runtime: Runtime) -> None:
    lifecycle = issue(frozen_runtime)
    before = [r.model_dump() for r in revisions(frozen_runtime, "web")]
    outcome = lifecycle.advance("web")
    assert (outcome.revision, outcome.state) == (1, S.ACTIVE)
    assert [r.model_dump() for r in revisions(frozen_runtime, "web")] == before


def test_plan_refuses_an_existing_name(frozen_runtime: Runtime) -> None:
    issue(frozen_runtime)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        Lifecycle(frozen_runtime).plan(spec())


def test_plan_refuses_an_invalid_certificate_name(frozen_runtime: Runtime) -> None:
    with pytest.raises(ValidationError, match="name"):
        Lifecycle(frozen_runtime).plan(spec("../etc"))


def test_plan_refuses_renew_before_not_shorter_than_validity(frozen_runtime: Runtime) -> None:
    with pytest.raises(ValidationError, match="--renew-before"):
        Lifecycle(frozen_runtime).plan(spec(renew_before=timedelta(days=90)))


# --- renewal ----------------------------------------------------------------------------


def test_renew_before_due_creates_no_revision(frozen_runtime: Runtime) -> None:
    lifecycle = issue(frozen_runtime)
    outcome = lifecycle.renew("web")
    assert "not due" in outcome.message
    assert [r.number for r in revisions(frozen_runtime, "web")] == [1]
    assert lifecycle.due() == []


def test_due_lists_a_certificate_once_the_clock_passes_renewal_due_at(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    lifecycle = issue(frozen_runtime)
    issue(frozen_runtime, "later", validity=timedelta(days=200))
    due = certificate(frozen_runtime, "web").renewal_due_at
    assert due is not None
    clock.set(due - timedelta(seconds=1))
    assert lifecycle.due() == []
    clock.set(due)
    assert lifecycle.due() == ["web"]


def test_renewal_when_due_creates_revision_two_with_a_new_key(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    lifecycle = issue(frozen_runtime)
    past_renewal(frozen_runtime, clock, "web")
    outcome = lifecycle.renew("web")
    assert (outcome.revision, outcome.state) == (2, S.ACTIVE)
    first, second = revisions(frozen_runtime, "web")
    assert first.state == S.SUPERSEDED
    assert second.state == S.ACTIVE
    assert second.reason == "renew"
    assert certificate_public_key(first) != certificate_public_key(second)
    assert first.serial != second.serial
    cert = certificate(frozen_runtime, "web")
    assert (cert.current_revision, cert.serial) == (2, second.serial)
    assert cert.renewal_due_at and cert.renewal_due_at > clock.now()
    assert lifecycle.due() == []


def test_renewal_with_reuse_key_keeps_the_key(frozen_runtime: Runtime, clock: FrozenClock) -> None:
    lifecycle = issue(frozen_runtime, reuse_key=True)
    past_renewal(frozen_runtime, clock, "web")
    lifecycle.renew("web")
    first, second = revisions(frozen_runtime, "web")
    assert certificate_public_key(first) == certificate_public_key(second)
    assert first.serial != second.serial
    # re-sealed under the new revision's own context, not copied
    assert first.sealed_key != second.sealed_key
    assert sealed_public_key(frozen_runtime, "web", second) == certificate_public_key(second)


def test_forced_renewal_before_due_creates_a_new_revision(frozen_runtime: Runtime) -> None:
    lifecycle = issue(frozen_runtime)
    outcome = lifecycle.renew("web", force=True)
    assert outcome.revision == 2
    assert [r.reason for r in revisions(frozen_runtime, "web")] == ["issue", "force"]


def test_renewals_are_audited(frozen_runtime: Runtime, clock: FrozenClock) -> None:
    lifecycle = issue(frozen_runtime)
    past_renewal(frozen_runtime, clock, "web")
    lifecycle.renew("web")
    with frozen_runtime.session() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions.count("certificate.issue") == 1
    assert actions.count("certificate.renew") == 1


def test_a_year_of_renewals_keeps_the_certificate_valid(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    lifecycle = issue(frozen_runtime, validity=timedelta(days=30))
    end = clock.now() + timedelta(days=365)
    while clock.now() < end:
        clock.advance(timedelta(days=1))
        for name in lifecycle.due():
            lifecycle.renew(name)
        cert = certificate(frozen_runtime, "web")
        assert cert.not_after and cert.not_after > clock.now()
    # renewed at two thirds of each 30-day lifetime: about every 20 days
    assert 17 <= certificate(frozen_runtime, "web").current_revision <= 20


# --- failures ---------------------------------------------------------------------------


def test_a_retryable_failure_keeps_the_revision_in_flight_and_backs_off(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    issuer = fake(frozen_runtime, failure="retryable")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    cert = certificate(frozen_runtime, "web")
    (rev,) = revisions(frozen_runtime, "web")
    assert rev.state == S.KEY_SEALED
    assert rev.sealed_key is not None
    assert rev.certificate_pem is None
    assert cert.failures == 1
    assert cert.status == "pending"
    assert cert.last_error and "fake issuer refused" in cert.last_error
    assert cert.next_attempt_at is not None
    assert clock.now() + timedelta(hours=1) <= cert.next_attempt_at
    assert cert.next_attempt_at <= clock.now() + timedelta(hours=1.1)
    # not retried before the back-off has passed
    assert lifecycle.unfinished() == []
    assert len(issuer.requests) == 1


def test_a_later_advance_resumes_a_retryable_failure_with_the_same_key(
    frozen_runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = fake(frozen_runtime, failure="retryable")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    sealed_before = revisions(frozen_runtime, "web")[0].sealed_key

    import certman.pki

    def no_new_keys(*_: object) -> None:
        raise AssertionError("a key was generated for a revision that already has one")

    monkeypatch.setattr(certman.pki, "generate_private_key", no_new_keys)
    issuer.failure = None
    clock.advance(timedelta(hours=2))
    assert lifecycle.unfinished() == ["web"]
    outcome = lifecycle.renew("web")
    assert (outcome.revision, outcome.state) == (1, S.ACTIVE)
    (rev,) = revisions(frozen_runtime, "web")
    assert rev.sealed_key == sealed_before
    assert sealed_public_key(frozen_runtime, "web", rev) == certificate_public_key(rev)
    cert = certificate(frozen_runtime, "web")
    assert (cert.status, cert.failures, cert.next_attempt_at, cert.last_error) == (
        "active",
        0,
        None,
        None,
    )


def test_repeated_retryable_failures_back_off_longer(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    fake(frozen_runtime, failure="retryable")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    waits = []
    for _ in range(3):
        with pytest.raises(IssuanceError):
            lifecycle.advance("web")
        cert = certificate(frozen_runtime, "web")
        assert cert.next_attempt_at is not None
        waits.append(cert.next_attempt_at - clock.now())
        clock.set(cert.next_attempt_at)
    assert certificate(frozen_runtime, "web").failures == 3
    assert waits[0] < waits[1] < waits[2]
    assert waits[2] >= timedelta(hours=4)


def test_a_retryable_failure_honours_the_issuers_retry_after(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    retry_after = clock.now() + timedelta(hours=6)
    fake(frozen_runtime, failure="retryable", retry_after=retry_after)
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    assert certificate(frozen_runtime, "web").next_attempt_at == retry_after
    assert revisions(frozen_runtime, "web")[0].retry_after == retry_after


def test_a_permanent_failure_marks_the_revision_and_certificate_failed(
    frozen_runtime: Runtime,
) -> None:
    fake(frozen_runtime, failure="permanent")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    (rev,) = revisions(frozen_runtime, "web")
    cert = certificate(frozen_runtime, "web")
    assert rev.state == S.FAILED
    assert rev.error and "permanent" in rev.error
    assert cert.status == "failed"
    assert cert.next_attempt_at is None
    assert lifecycle.unfinished() == []
    assert lifecycle.due() == []
    with frozen_runtime.session() as session:
        failed = session.exec(
            select(AuditEvent).where(AuditEvent.action == "certificate.failed")
        ).all()
    assert len(failed) == 1


def test_a_permanent_renewal_failure_leaves_the_active_revision_in_place(
    frozen_runtime: Runtime,
) -> None:
    issuer = fake(frozen_runtime)
    lifecycle = issue(frozen_runtime, issuer="fake")
    issuer.failure = "permanent"
    with pytest.raises(IssuanceError):
        lifecycle.renew("web", force=True)
    first, second = revisions(frozen_runtime, "web")
    assert (first.state, second.state) == (S.ACTIVE, S.FAILED)
    cert = certificate(frozen_runtime, "web")
    assert (cert.current_revision, cert.serial, cert.status) == (1, first.serial, "failed")


def test_issue_after_a_failed_first_issuance_starts_a_new_revision(
    frozen_runtime: Runtime,
) -> None:
    issuer = fake(frozen_runtime, failure="permanent")
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError):
        lifecycle.advance("web")
    issuer.failure = None
    _, planned = lifecycle.plan(spec(issuer="fake"))
    assert planned
    assert lifecycle.advance("web").revision == 2
    assert [r.state for r in revisions(frozen_runtime, "web")] == [S.FAILED, S.ACTIVE]


def test_a_certificate_for_another_key_is_refused_and_not_stored(
    frozen_runtime: Runtime,
) -> None:
    fake(frozen_runtime, wrong_key=True)
    lifecycle = Lifecycle(frozen_runtime)
    lifecycle.plan(spec(issuer="fake"))
    with pytest.raises(IssuanceError, match="another key"):
        lifecycle.advance("web")
    (rev,) = revisions(frozen_runtime, "web")
    assert rev.state == S.FAILED
    assert rev.certificate_pem is None
    assert rev.serial is None
    assert certificate(frozen_runtime, "web").serial is None


def test_one_failing_certificate_does_not_stop_the_others_from_renewing(
    frozen_runtime: Runtime, clock: FrozenClock
) -> None:
    issuer = fake(frozen_runtime)
    lifecycle = Lifecycle(frozen_runtime)
    for name in ("a", "bad", "c"):
        issue(frozen_runtime, name, issuer="fake")
    issuer.failure, issuer.fail_names = "permanent", ("bad",)
    clock.advance(timedelta(days=61))
    assert sorted(lifecycle.due()) == ["a", "bad", "c"]
    failed = []
    for name in lifecycle.due():
        try:
            lifecycle.renew(name)
        except IssuanceError:
            failed.append(name)
    assert failed == ["bad"]
    assert certificate(frozen_runtime, "a").current_revision == 2
    assert certificate(frozen_runtime, "c").current_revision == 2
    assert certificate(frozen_runtime, "bad").current_revision == 1
