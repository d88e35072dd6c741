"""Bulk issuance: the same lifecycle, batched; refusals change nothing."""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, func, select

from certman.clock import FrozenClock
from certman.errors import AlreadyExistsError, ArchiveError, ValidationError
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.models import KeyType
from certman.pki import certificate_facts, load_private_key_der, public_key_der
from certman.service import steps
from certman.service.bulk import issue_many, validate_all
from certman.service.checks import verify_archive
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime
from certman.service.steps import unseal_private_key


def spec(name: str, *domains: str) -> IssueSpec:
    return IssueSpec(
        name=name,
        domains=domains or (f"{name}.example.com",),
        issuer="default",
        key_type=KeyType.EC_P256,
        validity=timedelta(days=30),
    )


def count(rt: Runtime, model: type) -> int:
    with rt.session() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_bulk_issue_makes_every_certificate_active_archived_and_audited(runtime: Runtime) -> None:
    report = issue_many(runtime, [spec(f"h{i}") for i in range(25)], batch_size=10)
    assert sorted(report.issued) == sorted(f"h{i}" for i in range(25))
    assert not report.failed
    with runtime.session() as session:
        certs = session.exec(select(ManagedCertificate)).all()
        revs = session.exec(select(Revision)).all()
    assert {c.status for c in certs} == {"active"}
    assert all(c.renewal_due_at and c.serial and c.current_revision == 1 for c in certs)
    assert {r.state for r in revs} == {"active"}
    assert len({r.serial for r in revs}) == 25
    assert verify_archive(runtime).ok
    # ca.create from init, then one issue event per certificate
    assert count(runtime, AuditEvent) == 1 + 25


def test_bulk_issue_gives_sqlite_its_checkpoint_setting_back(runtime: Runtime) -> None:
    issue_many(runtime, [spec(f"h{i}") for i in range(40)], batch_size=20)
    with ExitStack() as stack:  # every idle connection of the pool, the run's among them
        connections = [stack.enter_context(runtime.engine.connect()) for _ in range(6)]
        settings = {c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() for c in connections}
    assert settings == {1000}


def test_bulk_issue_refuses_a_name_given_twice_and_writes_nothing(runtime: Runtime) -> None:
    with pytest.raises(ValidationError, match="twice"):
        issue_many(runtime, [spec("a"), spec("a", "other.example.com")])
    assert count(runtime, ManagedCertificate) == 0


def test_bulk_issue_refuses_an_existing_name_with_other_settings_and_writes_nothing(
    runtime: Runtime,
) -> None:
    issue_many(runtime, [spec("a")])
    with pytest.raises(AlreadyExistsError, match="'a' already exists with other settings"):
        issue_many(runtime, [spec("b"), spec("a", "other.example.com")])
    assert count(runtime, ManagedCertificate) == 1
    assert count(runtime, Revision) == 1


def test_bulk_issue_again_skips_what_it_issued_with_the_same_settings(runtime: Runtime) -> None:
    first = issue_many(runtime, [spec("a"), spec("b")])
    again = issue_many(runtime, [spec("a"), spec("b"), spec("c")])
    assert sorted(first.issued) == ["a", "b"]
    assert again.issued == ["c"] and sorted(again.skipped) == ["a", "b"] and not again.failed
    assert count(runtime, Revision) == 3  # nothing issued twice
    with runtime.session() as session:
        issues = session.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "certificate.issue")
        ).one()
    assert issues == 3


def test_a_name_taken_after_validation_refuses_the_batch_and_writes_nothing(
    runtime: Runtime,
) -> None:
    plan = validate_all(runtime, [spec("b"), spec("a"), spec("c")])
    issue_many(runtime, [spec("a")])  # as if another process created "a" meanwhile
    with pytest.raises(AlreadyExistsError, match="'a' already exists"):
        issue_many(runtime, plan)
    assert count(runtime, ManagedCertificate) == 1
    assert count(runtime, Revision) == 1
    assert count(runtime, AuditEvent) == 1 + 1
    assert runtime.archive.list() == ["a/000001.bundle"]


def test_bulk_issue_cli_reads_csv_and_reports(cli, initialised_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "certs.csv"
    csv.write_text(
        "name,domains\nweb,www.example.com example.com\napi,api.example.com,ec-p384,30d\n"
    )
    result = cli.ok("bulk-issue", str(csv))
    assert "2 certificates issued, 0 failed." in result.stdout
    shown = cli.ok("show", "api", "--json").stdout
    assert '"key_type": "ec-p384"' in shown


def test_bulk_issue_cli_refuses_a_bad_row_before_writing(
    cli, initialised_home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "certs.csv"
    csv.write_text("good,good.example.com\nbad,bad..example.com\n")
    result = cli("bulk-issue", str(csv))
    assert result.exit_code == 2
    assert "bad..example.com" in result.stderr
    assert cli.ok("list", "--json").stdout.strip() == "[]"


class _Killed(BaseException):
    """Stands in for SIGKILL: no certman code catches it, so nothing after it commits."""


def _kill(*_args: object, **_kwargs: object) -> None:
    raise _Killed


def _revisions(rt: Runtime) -> list[Revision]:
    with rt.session() as session:
        return list(session.exec(select(Revision).order_by(col(Revision.id))).all())


def _resume(rt: Runtime) -> None:
    lifecycle = Lifecycle(rt)
    for name in lifecycle.unfinished():
        lifecycle.advance(name)


def test_bulk_issue_killed_before_issuing_keeps_every_sealed_key_and_resumes(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "issue", _kill)
    with pytest.raises(_Killed):
        issue_many(runtime, [spec(f"h{i}") for i in range(5)])
    monkeypatch.undo()
    before = _revisions(runtime)
    # the keys (and the planned serials) were committed before any certificate was asked for
    assert [(r.state, bool(r.sealed_key), bool(r.serial)) for r in before] == [
        ("key_sealed", True, True)
    ] * 5
    assert runtime.archive.list() == []

    _resume(runtime)
    after = _revisions(runtime)
    assert {r.state for r in after} == {"active"}
    for name, old, new in zip([f"h{i}" for i in range(5)], before, after, strict=True):
        assert new.sealed_key == old.sealed_key  # never regenerated
        assert new.serial == old.serial  # signed as planned
        key = load_private_key_der(unseal_private_key(runtime, name, new))
        assert certificate_facts(new.certificate_pem.encode()).public_key_der == public_key_der(
            key.public_key()
        )
    assert verify_archive(runtime).ok


def test_bulk_issue_killed_after_archiving_resumes_without_a_second_certificate(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "activate", _kill)
    with pytest.raises(_Killed):
        issue_many(runtime, [spec(f"h{i}") for i in range(5)])
    monkeypatch.undo()
    before = _revisions(runtime)
    # issued and committed; the bundles are on disk but not yet recorded
    assert {r.state for r in before} == {"issued"}
    assert all(r.serial and r.archive_location is None for r in before)
    assert len(runtime.archive.list()) == 5

    _resume(runtime)
    after = _revisions(runtime)
    assert {r.state for r in after} == {"active"}
    assert [r.serial for r in after] == [r.serial for r in before]
    assert verify_archive(runtime).ok
    assert count(runtime, AuditEvent) == 1 + 5


def test_bulk_issue_commits_the_archived_batch_only_once_its_bundles_are_flushed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session as OrmSession

    from certman.archive.local import LocalArchiveStore

    order: list[str] = []
    flush = LocalArchiveStore.flush

    def slow_flush(store: LocalArchiveStore) -> None:
        time.sleep(0.3)  # the batch's last commit is ready long before this ends
        flush(store)
        order.append("flushed")

    def committed(_session: object) -> None:
        order.append("commit")

    monkeypatch.setattr(LocalArchiveStore, "flush", slow_flush)
    event.listen(OrmSession, "after_commit", committed)
    try:
        report = issue_many(runtime, [spec(f"h{i}") for i in range(20)])
    finally:
        event.remove(OrmSession, "after_commit", committed)
    assert len(report.issued) == 20
    # sealed keys, certificates, then — after the flush — archived and active
    assert order == ["commit", "commit", "flushed", "commit"]


def test_a_failed_flush_activates_nothing_and_the_batch_resumes(
    frozen_runtime: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = frozen_runtime
    from certman.archive.local import LocalArchiveStore

    def failing_flush(_store: LocalArchiveStore) -> None:
        raise ArchiveError("The archive disk went away.", retryable=True)

    monkeypatch.setattr(LocalArchiveStore, "flush", failing_flush)
    names = [f"h{i}" for i in range(20)]
    report = issue_many(runtime, [spec(n) for n in names])
    monkeypatch.undo()
    assert not report.issued
    assert sorted(report.failed) == sorted(names)
    assert set(report.failed.values()) == {"The archive disk went away."}
    # Certificates signed and committed; none recorded as archived, active or issued.
    assert {(r.state, r.archive_location) for r in _revisions(runtime)} == {("issued", None)}
    assert _actions(runtime).count("certificate.issue") == 0

    clock.advance(timedelta(days=1))  # past the retry the failure scheduled
    _resume(runtime)
    assert {r.state for r in _revisions(runtime)} == {"active"}
    assert verify_archive(runtime).ok
    assert _actions(runtime).count("certificate.issue") == 20


def _actions(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return list(session.exec(select(AuditEvent.action)).all())
