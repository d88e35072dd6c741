"""`certman renew NAME [--force]` and `certman renew --due [--dry-run]`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certman.clock import FrozenClock
from tests.cli.outcomes import assert_error, show
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


def public_key(cli: Cli, name: str, out: Path) -> bytes:
    cli.ok("export", name, "--out", str(out), "--force")
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_renew_before_due_says_so_and_changes_nothing(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    before = snapshot_home(initialised_home)
    result = cli.ok("renew", "web")
    due = show(cli, "web")["renewal_due_at"]
    assert due.endswith("Z")
    assert f"not due until {due};" in result.stdout
    assert "--force" in result.stdout
    assert_unchanged(before, initialised_home)


def test_renew_force_makes_revision_two_with_a_new_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    first_key = public_key(cli, "web", tmp_path / "out")
    first = show(cli, "web")
    result = cli.ok("renew", "web", "--force")
    assert "web: revision 2 active" in result.stdout
    second = show(cli, "web")
    assert second["revision"] == 2
    assert second["serial"] != first["serial"]
    assert [r["state"] for r in second["revisions"]] == ["superseded", "active"]
    assert public_key(cli, "web", tmp_path / "out") != first_key


def test_renew_reuse_key_keeps_the_public_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    first_key = public_key(cli, "web", tmp_path / "out")
    cli.ok("renew", "web", "--force")
    assert public_key(cli, "web", tmp_path / "out") == first_key


def test_reuse_key_from_the_config_keeps_the_public_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    (initialised_home / "certman.toml").write_text("[defaults]\nreuse_key = true\n")
    cli.ok("issue", "web", "-d", "www.example.com")
    first_key = public_key(cli, "web", tmp_path / "out")
    cli.ok("renew", "web", "--force")
    assert public_key(cli, "web", tmp_path / "out") == first_key


def test_renew_due_with_nothing_due_says_so(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    assert cli.ok("renew", "--due").stdout.strip() == "Nothing is due."


def test_renew_due_renews_only_what_is_due(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "short", "-d", "short.example.com", "--validity", "30d")
    cli.ok("issue", "long", "-d", "long.example.com", "--validity", "90d")
    cli_clock.advance(timedelta(days=21))
    result = cli.ok("renew", "--due")
    assert "short: revision 2 active." in result.stdout
    assert "long" not in result.stdout
    assert show(cli, "short")["revision"] == 2
    assert show(cli, "long")["revision"] == 1


def test_renew_due_dry_run_lists_and_changes_nothing(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "short", "-d", "short.example.com", "--validity", "30d")
    cli.ok("issue", "long", "-d", "long.example.com", "--validity", "90d")
    cli_clock.advance(timedelta(days=21))
    before = snapshot_home(initialised_home)
    result = cli.ok("renew", "--due", "--dry-run")
    assert result.stdout.strip() == "would renew short"
    assert_unchanged(before, initialised_home)


def test_one_failing_certificate_does_not_block_the_others(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    (initialised_home / "certman.toml").write_text(
        '[issuers.flaky]\ntype = "fake"\nfailure = "permanent"\n'
        'fail_names = ["bad"]\nfail_from_revision = 2\n'
    )
    for name in ("alpha", "bad", "omega"):
        cli.ok("issue", name, "-d", f"{name}.example.com", "--issuer", "flaky")
    cli_clock.advance(timedelta(days=61))
    result = cli("renew", "--due")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert "error: bad:" in result.stderr
    assert "1 of 3 renewals failed" in result.stderr
    assert "alpha: revision 2 active." in result.stdout
    assert "omega: revision 2 active." in result.stdout
    assert show(cli, "alpha")["revision"] == 2
    assert show(cli, "omega")["revision"] == 2
    bad = show(cli, "bad")
    assert bad["revision"] == 1
    assert bad["status"] == "failed"
    assert [r["state"] for r in bad["revisions"]] == ["active", "failed"]


def test_renew_due_finishes_a_retryable_failure_after_its_back_off(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text('[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\n')
    assert_error(cli("issue", "web", "-d", "www.example.com", "--issuer", "flaky"), 1)
    view = show(cli, "web")
    assert view["status"] == "pending"
    assert view["failures"] == 1
    assert view["next_attempt_at"] is not None
    assert cli.ok("renew", "--due").stdout.strip() == "Nothing is due."  # still backing off
    config.write_text('[issuers.flaky]\ntype = "fake"\n')  # the issuer recovers
    cli_clock.advance(timedelta(hours=2))
    assert "web: revision 1 active." in cli.ok("renew", "--due").stdout
    assert show(cli, "web")["status"] == "active"


def test_issue_again_resumes_an_unfinished_issuance(
    initialised_home: Path, cli: Cli, fake_issuers: None
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text('[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\n')
    assert_error(cli("issue", "web", "-d", "www.example.com", "--issuer", "flaky"), 1)
    config.write_text('[issuers.flaky]\ntype = "fake"\n')
    result = cli.ok("issue", "web", "-d", "www.example.com", "--issuer", "flaky")
    assert "Resuming" in result.stderr
    assert show(cli, "web")["revision"] == 1


def test_renew_due_goes_on_past_one_page_of_due_certificates(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a page of 2 stands in for the 500 read at a time: 5 due certificates span 3 pages
    monkeypatch.setattr("certman.cli.certs.DUE_PAGE", 2)
    names = [f"c{i}" for i in range(5)]
    for name in names:
        cli.ok("issue", name, "-d", f"{name}.example.com", "--validity", "30d")
    cli_clock.advance(timedelta(days=21))
    planned = cli.ok("renew", "--due", "--dry-run").stdout.splitlines()
    assert sorted(planned) == [f"would renew {n}" for n in names]
    result = cli.ok("renew", "--due")
    assert sorted(result.stdout.splitlines()) == [f"{n}: revision 2 active." for n in names]
    assert all(show(cli, n)["revision"] == 2 for n in names)
    assert cli.ok("renew", "--due").stdout.strip() == "Nothing is due."
