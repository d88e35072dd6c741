"""What `certman serve` logs: a line per renewal and per failure, one line for a lost database."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from certman.scheduler.service import Service
from sqlalchemy import create_engine, text

from certman.clock import FrozenClock, SystemClock
from tests.components.nginx import free_port
from tests.components.postgres import PostgresCluster
from tests.scheduler.conftest import make_home, runtime_for
from tests.scheduler.processes import run, show
from tests.scheduler.test_reconcile import issue, reconciler


def test_each_renewal_and_each_failure_gets_its_own_line(
    tmp_path: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    extra = '[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\nfail_from_revision = 2\n'
    extra += '[issuers.gone]\ntype = "fake"\nfailure = "permanent"\nfail_from_revision = 2\n'
    rt = runtime_for(make_home(tmp_path / "h", extra), clock)
    issue(rt, "good", validity=3)
    issue(rt, "bad", issuer="flaky", validity=3)
    issue(rt, "doomed", issuer="gone", validity=3)
    clock.advance(timedelta(days=2, hours=1))
    with caplog.at_level(logging.INFO, logger="certman"):
        reconciler(rt).tick()
    lines = {r.getMessage().split(":", 1)[0]: r for r in caplog.records}
    good = lines["good"]
    assert good.levelno == logging.INFO
    from sqlmodel import select

    from certman.inventory.tables import ManagedCertificate

    with rt.session() as session:
        certs = {c.name: c for c in session.exec(select(ManagedCertificate)).all()}
    renewed = certs["good"]
    assert renewed.serial and renewed.not_after and renewed.renewal_due_at
    assert good.getMessage() == (
        f"good: renewed, revision 2, serial {renewed.serial}, "
        f"not after {renewed.not_after:%Y-%m-%dT%H:%M:%SZ}, "
        f"next renewal due {renewed.renewal_due_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    bad = lines["bad"]
    assert bad.levelno == logging.WARNING and "retryable" in bad.getMessage()
    assert "The fake issuer refused bad" in bad.getMessage()
    next_attempt = certs["bad"].next_attempt_at
    assert next_attempt and f"Next attempt {next_attempt:%Y-%m-%dT%H:%M:%SZ}" in bad.getMessage()
    doomed = lines["doomed"]
    assert doomed.levelno == logging.WARNING and "(permanent)" in doomed.getMessage()
    assert "certman renew doomed" in doomed.getMessage()


def test_a_lost_database_is_one_line_per_tick_not_a_traceback(
    tmp_path: Path, pg_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"
    home = make_home(
        tmp_path / "h", f'[database]\nurl = "{pg_cluster.create_database(database)}"\n'
    )
    rt = runtime_for(home, SystemClock())
    issue(rt, "web")
    service = Service(rt)
    service._tick()
    admin = create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    admin.dispose()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="certman"):
        service._tick()
        service._tick()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    for record in errors:
        message = record.getMessage()
        assert record.exc_info is None, "no traceback for a known failure"
        assert message.startswith("reconcile tick failed: The inventory database cannot be")
        assert "\n" not in message
    # the first tick finds its pooled connection cut; the next one, the database gone
    assert f'database "{database}" does not exist' in errors[-1].getMessage()
    rt.engine.dispose()


def test_serve_logs_at_info_by_default(tmp_path: Path) -> None:
    home = make_home(tmp_path / "h", f'[service]\nlisten = "127.0.0.1:{free_port()}"\n')
    issued = run(home, "issue", "web", "-d", "web.example.com", "--validity", "1h",
                 "--renew-before", "3599s")  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    time.sleep(1.5)  # due one second after issuance
    once = run(home, "serve", "--once")
    assert once.returncode == 0, once.stderr
    view = show(home, "web")
    assert view["revision"] == 2
    assert f"INFO certman.serve: web: renewed, revision 2, serial {view['serial']}" in once.stderr
    assert "Traceback" not in once.stderr
