"""ARI is asked again on the server's schedule (RFC 9773 section 4.3), and a moved window counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from certman.acme_client.ari import FAILED_RETRY_AFTER
from certman.scheduler.notify import Notifier
from certman.scheduler.reconcile import Reconciler
from sqlmodel import Session, select

from certman.clock import FrozenClock
from certman.config import load_config
from certman.inventory.tables import ManagedCertificate
from certman.service.lifecycle import Lifecycle
from certman.service.renewal_info import refresh_renewal_windows
from certman.service.runtime import Runtime
from tests.acme.ari_server import AriServer, Window
from tests.acme.conftest import AcmeHome


def window_from_now(start_days: float, end_days: float, retry_after: int = 3600) -> Window:
    now = datetime.now(UTC).replace(microsecond=0)
    return Window(
        start=now + timedelta(days=start_days),
        end=now + timedelta(days=end_days),
        retry_after=retry_after,
    )


def runtime_at(acme_home: AcmeHome, when: datetime) -> tuple[Runtime, FrozenClock]:
    clock = FrozenClock(when)
    return Runtime(config=load_config(acme_home.home, acme_home.config_path), clock=clock), clock


def issued(acme_home: AcmeHome, ari: AriServer, name: str, domain: str) -> ManagedCertificate:
    acme_home.configure(directory=ari.directory_url)
    assert acme_home.issue(name, domain).exit_code == 0
    acme_home.verified(name, domain)
    cert = acme_home.certificate(name)
    assert cert is not None and cert.renewal_due_at and cert.ari_next_fetch_at
    return cert


def test_the_next_fetch_is_stored_from_retry_after(acme_home: AcmeHome, ari: AriServer) -> None:
    ari.window = window_from_now(10, 12, retry_after=7200)
    before = datetime.now(UTC).replace(microsecond=0)
    cert = issued(acme_home, ari, "web", "stored.example.com")
    assert cert.ari_next_fetch_at is not None
    assert before + timedelta(hours=2) <= cert.ari_next_fetch_at
    assert cert.ari_next_fetch_at <= datetime.now(UTC) + timedelta(hours=2)


def test_the_window_is_asked_again_only_after_retry_after(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = window_from_now(10, 12, retry_after=3600)
    cert = issued(acme_home, ari, "web", "again.example.com")
    assert cert.ari_next_fetch_at is not None
    asked = len(ari.log.renewal_info_paths)
    rt, clock = runtime_at(acme_home, cert.ari_next_fetch_at - timedelta(minutes=5))
    assert refresh_renewal_windows(rt) == 0
    assert len(ari.log.renewal_info_paths) == asked, "not before Retry-After has passed"
    clock.set(cert.ari_next_fetch_at + timedelta(seconds=1))
    assert refresh_renewal_windows(rt) == 1
    assert len(ari.log.renewal_info_paths) == asked + 1
    assert refresh_renewal_windows(rt) == 0, "asked once, then not until the next Retry-After"
    after = acme_home.certificate("web")
    assert after is not None
    assert after.renewal_due_at == cert.renewal_due_at, "an unchanged window keeps its time"
    assert after.ari_next_fetch_at == clock.now() + timedelta(hours=1)


def test_a_window_moved_earlier_is_renewed_by_renew_due(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = window_from_now(10, 12)
    cert = issued(acme_home, ari, "web", "moved.example.com")
    assert cert.renewal_due_at is not None and cert.renewal_due_at > datetime.now(UTC)
    assert acme_home.cli("renew", "--due").stdout.strip() == "Nothing is due."
    # The CA plans to revoke the certificate: its window now lies in the past.
    ari.window = window_from_now(-2, -1)
    _fetch_time_has_passed(acme_home, "web")
    result = acme_home.cli("renew", "--due")
    assert result.exit_code == 0, result.stderr
    assert "web: revision 2 active." in result.stdout
    first, second = acme_home.revisions("web")
    assert (first.state, second.state) == ("superseded", "active")
    acme_home.verified("web", "moved.example.com")


def test_a_window_moved_later_moves_the_renewal_time_into_it(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = window_from_now(10, 12)
    cert = issued(acme_home, ari, "web", "later.example.com")
    assert cert.ari_next_fetch_at is not None
    ari.window = window_from_now(30, 31)
    rt, _ = runtime_at(acme_home, cert.ari_next_fetch_at + timedelta(seconds=1))
    assert refresh_renewal_windows(rt) == 1
    after = acme_home.certificate("web")
    assert after is not None and after.renewal_due_at is not None
    assert ari.window.start <= after.renewal_due_at <= ari.window.end


def test_the_service_tick_asks_again_and_renews_early(acme_home: AcmeHome, ari: AriServer) -> None:
    ari.window = window_from_now(10, 12)
    cert = issued(acme_home, ari, "web", "tick.example.com")
    assert cert.ari_next_fetch_at is not None
    rt, _ = runtime_at(acme_home, cert.ari_next_fetch_at + timedelta(seconds=1))
    reconciler = Reconciler(rt, holder="test", notifier=Notifier(rt))
    assert reconciler.tick().renewed == []  # asked again: the window has not moved
    ari.window = window_from_now(-1, -0.5)
    rt2, _ = runtime_at(acme_home, cert.ari_next_fetch_at + timedelta(hours=2))
    report = Reconciler(rt2, holder="test", notifier=Notifier(rt2)).tick()
    assert report.renewed == ["web"], report.failed
    acme_home.verified("web", "tick.example.com")
    assert ari.log.new_orders[-1]["replaces"]


def test_a_failing_answer_keeps_the_renewal_time_and_asks_again_later(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    ari.window = window_from_now(10, 12)
    cert = issued(acme_home, ari, "web", "flaky-ari.example.com")
    assert cert.ari_next_fetch_at is not None
    ari.window = None  # the ARI endpoint answers 404 now
    rt, clock = runtime_at(acme_home, cert.ari_next_fetch_at + timedelta(seconds=1))
    assert refresh_renewal_windows(rt) == 1
    after = acme_home.certificate("web")
    assert after is not None
    assert after.renewal_due_at == cert.renewal_due_at
    assert after.ari_next_fetch_at == clock.now() + FAILED_RETRY_AFTER
    assert Lifecycle(rt).due() == []


def test_without_ari_nothing_is_asked_again(acme_home: AcmeHome) -> None:
    acme_home.configure()  # Pebble 2.4 itself offers no renewalInfo
    assert acme_home.issue("web", "no-ari.example.com").exit_code == 0
    acme_home.verified("web", "no-ari.example.com")
    cert = acme_home.certificate("web")
    assert cert is not None and cert.ari_next_fetch_at is None


def _fetch_time_has_passed(acme_home: AcmeHome, name: str) -> None:
    """As if Retry-After had passed (the CLI runs on the real clock; ARI asks >= 1 min)."""
    rt = acme_home.runtime()
    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).one()
        cert.ari_next_fetch_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(cert)
        session.commit()
    rt.engine.dispose()


def test_the_upgrade_asks_again_for_acme_certificates_issued_before_it(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import text

    from certman.inventory.database import MIGRATIONS, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'certman.db'}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0005")  # the schema before ari_next_fetch_at
    with engine.begin() as connection:
        for cert_id, name, order_url in [(1, "acme", "https://ca/order/1"), (2, "private", None)]:
            connection.execute(
                text(
                    "INSERT INTO certificate (id, name, source, issuer, domains, key_type, "
                    "validity_seconds, reuse_key, targets, status, current_revision, "
                    "latest_revision, failures, created_at, updated_at) VALUES (:id, :name, "
                    "'managed', :name, '[]', 'ec-p256', 1, 0, '[]', 'active', 1, 1, 0, "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": cert_id, "name": name},
            )
            connection.execute(
                text(
                    "INSERT INTO revision (certificate_id, number, state, reason, key_type, "
                    "order_url, created_at, updated_at) VALUES (:id, 1, 'active', 'issue', "
                    "'ec-p256', :url, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": cert_id, "url": order_url},
            )
    before = datetime.now(UTC).replace(microsecond=0)
    assert migrate(engine)
    with Session(engine) as session:
        rows = {c.name: c for c in session.exec(select(ManagedCertificate)).all()}
    engine.dispose()
    acme = rows["acme"].ari_next_fetch_at
    assert acme is not None and before <= acme <= datetime.now(UTC)
    assert rows["private"].ari_next_fetch_at is None, "no ACME order: nothing to ask"
