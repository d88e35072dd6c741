"""`certman simulate`: the same tick on a simulated clock, over a copy of the inventory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli


def digest(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "certman.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_simulate_reports_renewals_and_no_lapse_for_healthy_certificates(
    cli: Cli, initialised_home: Path
) -> None:
    cli.ok("issue", "monthly", "-d", "m.example.com", "--validity", "30d")
    cli.ok(
        "issue", "quarterly", "-d", "q.example.com", "--validity", "90d", "--renew-before", "30d"
    )
    before = digest(initialised_home)
    result = json.loads(cli.ok("simulate", "--days", "400", "--json").stdout)
    assert digest(initialised_home) == before, "simulate never touches the real home"
    assert result["lapsed"] == 0
    by_name = {c["name"]: c for c in result["certificates"]}
    # 30-day certificates renew at 2/3 of their life: every 20 days, about 20 times a year
    assert 19 <= len(by_name["monthly"]["renewals"]) <= 21
    # 90 days, renew 30 days before: every 60 days
    assert 6 <= len(by_name["quarterly"]["renewals"]) <= 7
    assert not by_name["monthly"]["lapsed"]


def test_simulate_shows_a_lapse_when_renewal_is_stuck(
    cli: Cli, initialised_home: Path, fake_issuers: None
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text(
        config.read_text()
        + '\n[issuers.broken]\ntype = "fake"\nfailure = "permanent"\nfail_from_revision = 2\n'
    )
    cli.ok("issue", "stuck", "-d", "s.example.com", "--issuer", "broken", "--validity", "30d")
    cli("renew", "stuck", "--force")  # fails permanently: the certificate is marked failed
    result = json.loads(cli.ok("simulate", "--days", "60", "--json").stdout)
    (stuck,) = result["certificates"]
    assert result["lapsed"] == 1 and stuck["lapsed"] and stuck["renewals"] == []
    assert stuck["lapses_at"].startswith(
        json.loads(cli.ok("show", "stuck", "--json").stdout)["not_after"][:10]
    )


def test_simulate_shows_the_lapse_a_soon_expiring_ca_will_cause(
    cli: Cli, initialised_home: Path
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text('[ca]\nintermediate_validity = "200d"\n')
    cli.ok("ca", "create", "short")
    cli.ok("issue", "web", "-d", "w.example.com", "--issuer", "short", "--validity", "90d")
    cli.ok("issue", "api", "-d", "a.example.com", "--validity", "90d")  # the default CA
    before = digest(initialised_home)
    result = json.loads(cli.ok("simulate", "--days", "400", "--json").stdout)
    assert digest(initialised_home) == before
    by_name = {c["name"]: c for c in result["certificates"]}
    assert result["lapsed"] == 1 and not by_name["api"]["lapsed"]
    web = by_name["web"]
    # renewed at day 60 (expires day 150); at day 120 a 90-day leaf would outlive the CA
    assert web["lapsed"] and len(web["renewals"]) == 1
    assert "issuing CA expires" in web["reason"]
    text = cli.ok("simulate", "--days", "400").stdout
    assert "1 of 2 certificates would lapse" in text and "LAPSES" in text


def test_simulate_refuses_zero_days(cli: Cli, initialised_home: Path) -> None:
    result = cli("simulate", "--days", "0")
    assert result.exit_code == 2 and "--days" in result.stderr


def test_simulate_renews_acme_certificates_at_the_lifetime_the_ca_gave_and_contacts_nothing(
    cli: Cli, initialised_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ACME CA that is there (a listening socket) but must never be reached.
    directory = socket.socket()
    directory.bind(("127.0.0.1", 0))
    directory.listen()
    directory.setblocking(False)
    port = directory.getsockname()[1]
    config = initialised_home / "certman.toml"
    config.write_text(
        config.read_text()
        + f'\n[issuers.acme]\ntype = "acme"\ndirectory = "https://127.0.0.1:{port}/dir"\n'
        'http_address = "127.0.0.1:1"\n'
    )
    # web: certman asked for 90 days, the CA gave 6 (as Let's Encrypt's short-lived profile)
    cli.ok("issue", "web", "-d", "w.example.com", "--validity", "6d")
    with sqlite3.connect(initialised_home / "certman.db") as db:
        db.execute("UPDATE certificate SET issuer = 'acme', validity_seconds = ?", (90 * 86400,))
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def no_network(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("simulate must not use the network")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or [])
    try:
        result = json.loads(cli.ok("simulate", "--days", "30", "--json").stdout)
        with pytest.raises(BlockingIOError):
            directory.accept()  # nobody knocked
    finally:
        directory.close()
    assert attempts == [], "simulate reached for the network"
    (web,) = result["certificates"]
    assert result["lapsed"] == 0 and not web["lapsed"]
    # 6-day certificates renew at 2/3 of their life: about every 4 days, 7 times in 30
    # days (at the 90 days asked for it would not renew once)
    assert 6 <= len(web["renewals"]) <= 8


def simulate_process(home: Path, tmpdir: Path, days: str) -> subprocess.Popen[str]:
    from tests.e2e.conftest import installed_certman

    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAN_")}
    env["TMPDIR"] = str(tmpdir)  # where tempfile puts the simulation's home
    return subprocess.Popen(
        [installed_certman(), "--home", str(home), "simulate", "--days", days],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def simulation_homes(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("certman-simulate-*"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_simulation_stopped_by_a_signal_removes_its_home(
    cli: Cli, initialised_home: Path, tmp_path: Path, signum: int
) -> None:
    cli.ok("issue", "hourly", "-d", "h.example.com", "--validity", "2h")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = simulate_process(initialised_home, tmpdir, "3650")  # ~40,000 renewals: long
    deadline = time.monotonic() + 30
    while not (
        simulation_homes(tmpdir) and (simulation_homes(tmpdir)[0] / "simulation.db").exists()
    ):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the simulation never started"
        time.sleep(0.05)
    [home] = simulation_homes(tmpdir)
    assert home.name.startswith(f"certman-simulate-{run.pid}-")
    time.sleep(0.3)  # well into the reconcile loop
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode != 0, "the signal arrived after the simulation had finished"
    assert "Traceback" not in stderr
    assert simulation_homes(tmpdir) == []


def test_a_new_simulation_removes_homes_of_dead_runs_and_keeps_live_ones(
    cli: Cli, initialised_home: Path, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmpdir / f"certman-simulate-{gone.pid}-x1y2z3"
    (dead / "archive").mkdir(parents=True)
    (dead / "simulation.db").write_bytes(b"left by a killed run")
    live = tmpdir / f"certman-simulate-{os.getpid()}-a1b2c3"
    live.mkdir()
    unrelated = tmpdir / "certman-simulate-notapid"
    unrelated.mkdir()
    run = simulate_process(initialised_home, tmpdir, "30")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert "would lapse" in stdout
    assert not dead.exists()
    assert live.is_dir() and unrelated.is_dir()
    assert simulation_homes(tmpdir) == [live, unrelated]  # its own home is gone too
