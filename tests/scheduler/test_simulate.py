"""`certman simulate`: the same tick on a simulated clock, over a copy of the inventory."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

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
