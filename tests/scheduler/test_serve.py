"""`certman serve` as a real process on SQLite: unattended renewals, health, metrics, signals."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from certman.scheduler.events import EXPIRING
from certman.scheduler.reconcile import TickReport
from certman.scheduler.service import Service

from certman.clock import SystemClock
from tests.components.nginx import free_port
from tests.scheduler.conftest import Webhook, make_home, runtime_for
from tests.scheduler.processes import get, metrics, run, serve, show, stop, wait_for

SHAPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources"}


def revisions(home: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT name, current_revision FROM certificate").fetchall())


@pytest.fixture
def service_home(tmp_path: Path, webhook: Webhook) -> tuple[Path, int]:
    port = free_port()
    home = make_home(
        tmp_path / "home",
        f'[service]\ninterval = "1s"\njitter = "0s"\nlisten = "127.0.0.1:{port}"\n'
        f'[notify]\nthresholds = ["62m"]\n[notify.webhook]\nurl = "{webhook.url}"\n',
    )
    return home, port


def test_serve_renews_short_lived_certificates_unattended(
    service_home: tuple[Path, int], webhook: Webhook
) -> None:
    home, port = service_home
    for name in ("a", "b"):
        issued = run(
            home, "issue", name, "-d", f"{name}.example.com", "--validity", "1h",
            "--renew-before", "3570s",
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
    first = {name: show(home, name)["serial"] for name in ("a", "b")}
    service = serve(home)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "/healthz")
        # due 30 s after issuance (1 h - 3570 s): renewed without anyone asking
        wait_for(lambda: min(revisions(home).values()) >= 2, 90, "both renewals")
        families = metrics(port)
        second = run(home, "serve")  # a second service on the same SQLite database
    finally:
        code, err = stop(service)
    assert code == 0 and "Traceback" not in err, err
    assert second.returncode == 1, second.stderr
    assert "Another `certman serve`" in second.stderr and "PostgreSQL" in second.stderr
    assert "Traceback" not in second.stderr
    for name in ("a", "b"):
        view = show(home, name)
        assert view["serial"] != first[name]
        assert [r["state"] for r in view["revisions"]][-2:] == ["superseded", "active"]

    expiry = {
        s.labels["name"]: s.value
        for s in families["certman_certificate_expiration_timestamp_seconds"].samples
    }
    renewal = families["certman_certificate_renewal_timestamp_seconds"].samples
    assert set(expiry) == {"a", "b"} and all(v > time.time() - 5 for v in expiry.values())
    assert {s.labels["name"] for s in renewal} == {"a", "b"}
    renewals = {
        s.labels["result"]: s.value
        for s in families["certman_renewals"].samples
        if s.name == "certman_renewals_total"
    }
    assert renewals["success"] >= 2 and renewals["failed"] == 0
    assert families["certman_last_tick_timestamp_seconds"].samples[0].value > time.time() - 30
    counts = [
        s.value
        for s in families["certman_issuance_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert counts == [renewals["success"]]

    # Within 62 minutes of expiry from the start: one notice per certificate and serial.
    notices = webhook.of(EXPIRING)
    assert all(set(n) >= SHAPE and n["source"] == "certman" for n in notices)
    assert {n["detail"]["CommonName"] for n in notices} == {"a.example.com", "b.example.com"}
    assert all(n["detail"]["DaysToExpiry"] == 0 for n in notices)
    seen = [(n["detail"]["CertificateName"], n["detail"]["Serial"]) for n in notices]
    assert len(seen) == len(set(seen)) and {("a", first["a"]), ("b", first["b"])} <= set(seen)

    # A restarted service does not repeat what was sent.
    sent_before = len(webhook.received)
    again = serve(home)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "restart")
        time.sleep(2)
    finally:
        code, err = stop(again)
    assert code == 0, err
    seen = [(n["detail"]["CertificateName"], n["detail"]["Serial"]) for n in webhook.of(EXPIRING)]
    assert len(seen) == len(set(seen)), "a notice was repeated after the restart"
    later = webhook.received[sent_before:]
    assert all(n["detail"]["Serial"] not in first.values() for n in later)
    assert run(home, "audit", "verify").returncode == 0


def test_sigint_stops_cleanly_and_releases_the_lock(service_home: tuple[Path, int]) -> None:
    home, port = service_home
    service = serve(home)
    wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "/healthz")
    service.send_signal(signal.SIGINT)
    assert service.wait(timeout=30) == 0
    again = run(home, "serve", "--once")
    assert again.returncode == 0, again.stderr
    assert "0 renewed, 0 failed" in again.stdout


def test_a_killed_service_does_not_block_its_successor(service_home: tuple[Path, int]) -> None:
    home, port = service_home
    crashed = serve(home)
    wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "/healthz")
    crashed.kill()  # SIGKILL: no clean-up; the file lock dies with the process
    crashed.communicate()
    successor = serve(home)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "successor")
    finally:
        code, err = stop(successor)
    assert code == 0, err


def test_healthz_turns_503_when_ticks_stop(tmp_path: Path) -> None:
    port = free_port()
    home = make_home(
        tmp_path / "h", f'[service]\ninterval = "1s"\njitter = "0s"\nlisten = "127.0.0.1:{port}"\n'
    )
    service = Service(runtime_for(home, SystemClock()))
    stuck, calls = threading.Event(), []
    real_tick = service.reconciler.tick

    def tick() -> TickReport:
        calls.append(1)
        if len(calls) > 2:
            stuck.wait(30)  # a tick that hangs (a dead NFS mount, a wedged database ...)
        return real_tick()

    service.reconciler.tick = tick  # type: ignore[method-assign]
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: get(url)[0] == 200, 20, "healthy")
        _, body = wait_for(lambda: (s := get(url))[0] == 503 and s, 20, "503")
        assert "more than 3 intervals" in body
    finally:
        stuck.set()
        service.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_sigterm_during_a_renewal_stops_at_a_committed_step_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    port, tls = free_port(), tmp_path / "tls"
    tls.mkdir()
    started, go, reloads = tmp_path / "reload-started", tmp_path / "reload-go", tmp_path / "log"
    # The reload waits for the test: the service is caught inside the deploy step.
    reload = f"echo x >> {reloads}; touch {started}; while [ ! -e {go} ]; do sleep 0.05; done"
    home = make_home(
        tmp_path / "home",
        f'[service]\ninterval = "1s"\njitter = "0s"\nlisten = "127.0.0.1:{port}"\n'
        f'[targets.web]\ntype = "file"\nfullchain_path = "{tls / "fullchain.pem"}"\n'
        f'key_path = "{tls / "privkey.pem"}"\nreload_command = "{reload}"\n',
    )
    go.touch()
    issued = run(home, "issue", "web", "-d", "web.example.com", "--validity", "1h",
                 "--renew-before", "3599s", "--target", "web")  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    go.unlink()
    started.unlink()
    service = serve(home)
    try:
        wait_for(started.exists, 60, "the renewal to reach its rollout")
        service.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert service.poll() is None, "the step in flight was abandoned"
        go.touch()  # the reload finishes: the deploy step completes and is committed
        _, err = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0 and "Traceback" not in err, err
    with sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True) as db:
        ((current, claimed),) = db.execute("SELECT current_revision, claimed_by FROM certificate")
        states = dict(db.execute("SELECT number, state FROM revision").fetchall())
    assert (current, claimed) == (1, None), "revision 1 still active; the claim given back"
    assert states == {1: "active", 2: "deployed"}, "stopped right after the committed step"

    again = run(home, "serve", "--once")  # the next run resumes revision 2 where it stopped
    assert again.returncode == 0, again.stderr
    view = show(home, "web")
    assert view["revision"] == 2 and view["status"] == "active"
    assert [r["state"] for r in view["revisions"]] == ["superseded", "active"]
    assert reloads.read_text().count("x") == 2, "the rollout was not run again on resume"
