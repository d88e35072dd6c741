"""Several `certman serve` processes on one PostgreSQL: each certificate renewed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, col, func, select

from certman.clock import SystemClock
from certman.inventory.audit import AUDIT_LOCK_KEY, verify_chain
from certman.inventory.database import make_engine
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.models import KeyType
from certman.service.bulk import issue_many
from certman.service.lifecycle import IssueSpec
from tests.components.nginx import free_port
from tests.scheduler.conftest import make_home, runtime_for
from tests.scheduler.processes import get, serve, stop, wait_for

COUNT = 300


def in_flight_claims(engine, pid: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Certificates that process ``pid`` holds with their revision 2 part-way done."""
    with Session(engine) as session:
        rows = session.exec(
            select(ManagedCertificate.name)
            .join(Revision, col(Revision.certificate_id) == col(ManagedCertificate.id))
            .where(col(ManagedCertificate.claimed_by).contains(f":{pid}:"))
            .where(Revision.number == 2)
            .where(col(Revision.state).not_in(["active", "failed"]))
        ).all()
    return list(rows)


def renewed(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(ManagedCertificate)
                .where(ManagedCertificate.current_revision == 2)
            ).one()
        )


def test_three_services_renew_each_certificate_once_even_when_one_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    home = make_home(tmp_path / "h", f'[database]\nurl = "{pg_url}"\n')
    rt = runtime_for(home, SystemClock())
    specs = [
        IssueSpec(
            name=f"c{i:03d}",
            domains=(f"c{i:03d}.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=90),
        )
        for i in range(COUNT)
    ]
    assert len(issue_many(rt, specs).issued) == COUNT
    rt.engine.dispose()
    engine = make_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE certificate SET renewal_due_at = :past"),
            {"past": datetime.now(UTC) - timedelta(hours=1)},
        )
    # Hold the audit chain's lock: every service then stops inside its first activation,
    # after `deployed` is committed and with its claim held, until the test lets go. The
    # doomed service is killed there, certain to be mid-renewal (no timing involved).
    gate = engine.connect()
    gate.execute(text("SELECT pg_advisory_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    gate.commit()
    ports = [free_port() for _ in range(3)]
    services: list[subprocess.Popen[str]] = []
    for i, port in enumerate(ports):
        config = home / f"serve-{i}.toml"
        config.write_text(
            f'[database]\nurl = "{pg_url}"\n'
            f'[service]\ninterval = "1s"\njitter = "0s"\nlease = "3s"\n'
            f'listen = "127.0.0.1:{port}"\n'
        )
        services.append(serve(home, config))
    doomed = services[0]
    try:
        orphaned = wait_for(
            lambda: in_flight_claims(engine, doomed.pid), 90, "the doomed service's first claim"
        )
        for survivor in services[1:]:
            wait_for(lambda s=survivor: in_flight_claims(engine, s.pid), 90, "every service busy")
        doomed.kill()
        doomed.communicate()
        assert renewed(engine) == 0, "nothing activated while the gate was held"
        gate.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": AUDIT_LOCK_KEY})
        gate.commit()
        gate.close()
        wait_for(lambda: renewed(engine) == COUNT, 180, "every renewal", every=0.5)
        for port in ports[1:]:
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        if not gate.closed:
            gate.close()
        for service in services:
            if service.poll() is None:
                code, err = stop(service)
                assert code == 0, err
        for service in services:
            if service.poll() is None:
                os.kill(service.pid, signal.SIGKILL)

    # A runtime's session: the audit chain is checked with the audit key and the anchor.
    with runtime_for(home, SystemClock()).session() as session:
        certs = session.exec(select(ManagedCertificate)).all()
        assert {(c.current_revision, c.latest_revision, c.status) for c in certs} == {
            (2, 2, "active")
        }
        # SIGTERM gives claims back; only the killed one's expired leases may be left
        left = {c.claimed_by.split(":")[1] for c in certs if c.claimed_by}
        assert left <= {str(doomed.pid)}, "a stopped service kept its claims"
        states = session.exec(select(Revision.state, func.count()).group_by(Revision.state)).all()
        assert dict(states) == {"superseded": COUNT, "active": COUNT}
        renewals = session.exec(
            select(AuditEvent.subject).where(AuditEvent.action == "certificate.renew")
        ).all()
        assert sorted(renewals) == sorted(c.name for c in certs), "each renewed exactly once"
        # what the killed service had in hand was finished by the others, from where it stood
        finished = {c.name: c for c in certs if c.name in orphaned}
        assert len(finished) == len(orphaned) == 1
        assert all(c.current_revision == 2 and c.status == "active" for c in finished.values())
        chain = verify_chain(session)
        assert chain.ok, chain.message
    engine.dispose()
