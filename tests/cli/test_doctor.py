"""`certman doctor`: config, database, keys, CAs, archive, audit and certificates, read-only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from certman.clock import FrozenClock
from tests.cli.outcomes import assert_error
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


def areas(stdout: str) -> dict[str, str]:
    """area -> mark ("ok", "warn", "FAIL") of each line (the last one per area)."""
    marks = {}
    for line in stdout.splitlines():
        mark, rest = line[1:5].strip(), line[7:]
        marks[rest.split("  ")[0].strip()] = mark
    return marks


def test_doctor_on_a_fresh_home_is_all_ok(initialised_home: Path, cli: Cli) -> None:
    result = cli.ok("doctor")
    marks = areas(result.stdout)
    for area in ("config", "database", "keys", "ca default", "archive", "audit", "certificates"):
        assert marks.get(area) == "ok", (area, result.stdout)
    assert "mode 600" in result.stdout
    assert "at schema head" in result.stdout


def test_doctor_changes_nothing(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    before = snapshot_home(initialised_home)
    cli.ok("doctor")
    assert_unchanged(before, initialised_home)


def test_doctor_warns_about_a_certificate_due_for_renewal(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    cli_clock.advance(timedelta(days=21))
    result = cli.ok("doctor")
    assert "[warn] certificates" in result.stdout
    assert "due for renewal: web" in result.stdout


def test_doctor_fails_on_an_expired_certificate(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    cli_clock.advance(timedelta(days=31))
    result = cli("doctor")
    assert result.exit_code == 1
    assert "expired: web" in result.stdout


def test_doctor_fails_on_a_failed_certificate(
    initialised_home: Path, cli: Cli, fake_issuers: None
) -> None:
    (initialised_home / "certman.toml").write_text(
        '[issuers.broken]\ntype = "fake"\nfailure = "permanent"\n'
    )
    assert_error(cli("issue", "web", "-d", "www.example.com", "--issuer", "broken"), 1)
    result = cli("doctor")
    assert result.exit_code == 1
    assert "renewal failed for: web" in result.stdout


def test_doctor_fails_clearly_without_the_master_key(initialised_home: Path, cli: Cli) -> None:
    (initialised_home / "master.key").unlink()
    result = cli("doctor")
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "[FAIL] keys" in result.stdout
    assert "master key file" in result.stdout
    assert "missing" in result.stdout


def test_doctor_fails_on_a_master_key_open_to_others(initialised_home: Path, cli: Cli) -> None:
    (initialised_home / "master.key").chmod(0o644)
    result = cli("doctor")
    assert result.exit_code == 1
    assert "chmod 600" in result.stdout


def test_doctor_names_a_ca_whose_key_cannot_be_unsealed(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    from certman.config import load_config
    from certman.service.home import init_home

    other = tmp_path / "other"
    init_home(load_config(other, other / "certman.toml"), ca_key_type=None)
    (initialised_home / "master.key").write_bytes((other / "master.key").read_bytes())
    result = cli("doctor")
    assert result.exit_code == 1
    assert "[FAIL] ca default" in result.stdout
    assert "master key does not match" in result.stdout


def test_doctor_on_an_uninitialised_home_says_to_run_init(cli: Cli, home: Path) -> None:
    message = assert_error(cli("doctor"), 1)
    assert "certman init" in message
    assert not home.exists()


def test_doctor_says_the_home_and_database_are_private(initialised_home: Path, cli: Cli) -> None:
    result = cli.ok("doctor")
    assert areas(result.stdout)["permissions"] == "ok"


def test_doctor_warns_on_a_home_or_database_open_to_others(
    initialised_home: Path, cli: Cli
) -> None:
    initialised_home.chmod(0o755)
    (initialised_home / "certman.db").chmod(0o644)
    result = cli.ok("doctor")  # a warning, not a failure
    warnings = [
        line for line in result.stdout.splitlines() if line.startswith("[warn] permissions")
    ]
    assert f"chmod 700 {initialised_home}" in warnings[0]
    assert f"chmod 600 {initialised_home / 'certman.db'}`" in warnings[1]
    # SQLite gives the -wal/-shm it creates meanwhile the database's mode: named too
    assert all("chmod 600" in line for line in warnings[1:]), result.stdout
