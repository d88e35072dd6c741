"""The core inventory on a real PostgreSQL: migrations, aware times, the audit chain under load."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, select

from certman.clock import FrozenClock
from certman.inventory.audit import append_event, verify_chain
from certman.inventory.database import HEAD_REVISION, current_revision, make_engine
from certman.inventory.tables import ManagedCertificate, Revision
from certman.models import KeyType
from certman.pki import certificate_facts
from certman.service.bulk import issue_many
from certman.service.checks import run_doctor
from certman.service.lifecycle import IssueSpec, Lifecycle
from tests.scheduler.conftest import make_home, runtime_for
from tests.scheduler.test_reconcile import issue


def test_init_migrates_postgresql_to_head_and_times_stay_aware_utc(
    tmp_path: Path, pg_url: str
) -> None:
    home = make_home(tmp_path / "h", f'[database]\nurl = "{pg_url}"\n')
    engine = make_engine(pg_url)
    assert current_revision(engine) == HEAD_REVISION
    with engine.connect() as connection:
        kind = connection.execute(
            text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'certificate' AND column_name = 'not_after'"
            )
        ).scalar()
    assert kind == "timestamp with time zone"
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    rt = runtime_for(home, FrozenClock(start))
    issue(rt, "web", validity=30)
    with Session(engine) as session:
        cert = session.exec(select(ManagedCertificate)).one()
    assert cert.created_at == start and cert.created_at.tzinfo is not None
    assert cert.renewal_due_at is not None and cert.renewal_due_at.utcoffset() == timedelta(0)
    assert start + timedelta(days=19) < cert.renewal_due_at < start + timedelta(days=21)
    engine.dispose()


def test_issue_renew_and_doctor_work_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    home = make_home(tmp_path / "h", f'[database]\nurl = "{pg_url}"\n')
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    issue(rt, "web")
    assert Lifecycle(rt).renew("web", force=True).revision == 2
    report = run_doctor(rt)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert any("postgresql database at schema head" in c.message for c in report.checks)


def test_concurrent_audit_appends_keep_one_unbroken_chain(tmp_path: Path, pg_url: str) -> None:
    home = make_home(tmp_path / "h", f'[database]\nurl = "{pg_url}"\n')
    rt = runtime_for(home, FrozenClock(datetime.now(UTC)))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(number: int) -> None:
        try:
            start.wait()
            for i in range(40):
                with rt.session() as session:
                    # a change and its audit event commit together, as the lifecycle does
                    append_event(session, datetime.now(UTC), "test.append", f"w{number}", i=i)
                    session.commit()
        except BaseException as e:  # collected: a thread's failure must fail the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with rt.session() as session:
        check = verify_chain(session)
    assert check.ok, check.message
    assert check.events >= 160
    assert check.keyed_from == 1 and check.anchored == check.events
    rt.engine.dispose()


def test_bulk_issuance_on_postgresql_records_what_one_by_one_issuance_records(
    tmp_path: Path, pg_url: str
) -> None:
    """The bulk path writes through the driver directly: the rows must read back alike."""
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    home = make_home(tmp_path / "h", f'[database]\nurl = "{pg_url}"\n')
    rt = runtime_for(home, FrozenClock(start))
    issue(rt, "single", validity=30)
    specs = [
        IssueSpec(
            name=f"b{i}",
            domains=(f"b{i}.example.com", f"alt{i}.example.com"),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=30),
        )
        for i in range(12)
    ]
    report = issue_many(rt, specs, batch_size=5)
    assert sorted(report.issued) == sorted(s.name for s in specs) and not report.failed
    with Session(make_engine(pg_url)) as session:
        certs = {c.name: c for c in session.exec(select(ManagedCertificate)).all()}
        revs = {r.certificate_id: r for r in session.exec(select(Revision)).all()}
    single = certs.pop("single")
    for cert in certs.values():
        rev = revs[cert.id]
        assert cert.status == "active" and rev.state == "active"
        assert json.loads(cert.domains) == [
            f"{cert.name}.example.com",
            f"alt{cert.name[1:]}.example.com",
        ]
        assert (
            rev.certificate_pem
            and certificate_facts(rev.certificate_pem.encode()).serial == cert.serial
        )
        for field in ("created_at", "updated_at", "not_before", "not_after", "renewal_due_at"):
            mine, theirs = getattr(cert, field), getattr(single, field)
            assert mine == theirs and mine.utcoffset() == timedelta(0), field
        assert (rev.not_before, rev.not_after) == (cert.not_before, cert.not_after)
        assert cert.reuse_key is False and cert.failures == 0
    report = run_doctor(rt)
    assert report.ok, [c for c in report.checks if not c.ok]
    rt.engine.dispose()
