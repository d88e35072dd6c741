"""Bad input gets one clear error (exit 2, no traceback) and changes nothing at all.

Each test snapshots every database row and every file under the home before the refused
command and compares after it (tests/homestate.py).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from certman.config import load_config
from certman.service.home import init_home
from tests.cli.outcomes import assert_error
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a CA limited to example.com and one issued certificate, made once."""
    home = tmp_path_factory.mktemp("template") / "home"
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    cli.ok("ca", "create", "corp", "--permitted-domain", "example.com", "--max-validity", "30d")
    cli.ok("issue", "web", "-d", "www.example.com")
    with sqlite3.connect(home / "certman.db") as db:  # everything into the main file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return home


@pytest.fixture
def populated(template: Path, home: Path) -> Path:
    """A private copy of the template for each test (the CLI fixture runs on ``home``)."""
    shutil.copytree(template, home, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return home


def refused(cli: Cli, home: Path, *args: str, exit_code: int = 2) -> str:
    before = snapshot_home(home)
    message = assert_error(cli(*args), exit_code)
    assert_unchanged(before, home)
    return message


ISSUE = ("issue", "new")
CORP = ("--issuer", "corp", "--validity", "30d")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("-d", "exa mple.com"), ["'exa mple.com'", "not a valid DNS"], id="space"),
        pytest.param(("-d", "-bad.example.com"), ["'-bad.example.com'"], id="leading-hyphen"),
        pytest.param(("-d", "localhost"), ["'localhost'"], id="single-label"),
        pytest.param(("-d", "www.*.example.com"), ["wildcard"], id="inner-wildcard"),
        pytest.param(("-d", "a" * 64 + ".example.com"), ["not a valid DNS name"], id="long-label"),
        pytest.param(("-d", ""), ["empty"], id="empty"),
        pytest.param(("-d", "xn--zz.example.com"), ["'xn--zz'", "A-label"], id="bad-a-label"),
        pytest.param(("-d", "fe80::1%eth0"), ["zone index", "fe80::1"], id="scoped-ipv6"),
    ],
)
def test_issue_refuses_an_invalid_domain(
    populated: Path, cli: Cli, args: tuple[str, ...], expected: list[str]
) -> None:
    message = refused(cli, populated, *ISSUE, *args)
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    "domains",
    [
        pytest.param(("a.example.com", "a.example.com"), id="same"),
        pytest.param(("a.example.com", "A.Example.com."), id="case-and-dot"),
        pytest.param(("bücher.example", "xn--bcher-kva.example"), id="idna"),
        pytest.param(("2001:db8::1", "2001:DB8:0::1"), id="ip"),
    ],
)
def test_issue_refuses_a_duplicate_domain(
    populated: Path, cli: Cli, domains: tuple[str, str]
) -> None:
    message = refused(cli, populated, *ISSUE, "-d", domains[0], "-d", domains[1])
    assert "given twice" in message


def test_issue_refuses_domain_outside_permitted_domains(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, *CORP, "-d", "evil.com")
    assert "'evil.com'" in message
    assert "permitted domains" in message
    assert "example.com" in message


def test_issue_refuses_an_ip_address_from_a_domain_constrained_ca(
    populated: Path, cli: Cli
) -> None:
    message = refused(cli, populated, *ISSUE, *CORP, "-d", "10.0.0.1")
    assert "10.0.0.1" in message


def test_issue_refuses_a_look_alike_of_a_permitted_domain(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, *CORP, "-d", "notexample.com")
    assert "permitted domains" in message


def test_issue_refuses_one_bad_name_among_good_ones(populated: Path, cli: Cli) -> None:
    args = (*CORP, "-d", "www.example.com", "-d", "evil.com")
    assert "'evil.com'" in refused(cli, populated, *ISSUE, *args)


def test_issue_refuses_an_unknown_issuer(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, "--issuer", "nope", "-d", "x.example.com")
    assert "Unknown issuer 'nope'" in message
    assert "corp" in message
    assert "default" in message


def test_issue_refuses_an_unknown_key_type(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, "--key-type", "dsa-1024", "-d", "x.example.com")
    assert "--key-type" in message
    assert "'dsa-1024'" in message
    assert "ec-p256" in message


@pytest.mark.parametrize("validity", ["0d", "0s", "-5d", "-1h"])
def test_issue_refuses_a_validity_not_longer_than_zero(
    populated: Path, cli: Cli, validity: str
) -> None:
    message = refused(cli, populated, *ISSUE, "--validity", validity, "-d", "x.example.com")
    assert "--validity must be longer than zero" in message


def test_issue_refuses_a_validity_that_is_not_a_duration(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, "--validity", "90", "-d", "x.example.com")
    assert "--validity" in message
    assert "90d" in message


def test_issue_refuses_a_validity_over_the_ca_maximum(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, "--validity", "398d", "-d", "x.example.com")
    assert "exceeds the max_validity 397d" in message
    assert "'default'" in message


def test_issue_refuses_a_validity_over_a_created_cas_maximum(populated: Path, cli: Cli) -> None:
    args = ("--issuer", "corp", "--validity", "31d", "-d", "x.example.com")
    assert "max_validity 30d" in refused(cli, populated, *ISSUE, *args)


def test_issue_refuses_renew_before_not_shorter_than_validity(populated: Path, cli: Cli) -> None:
    args = ("--validity", "30d", "--renew-before", "30d", "-d", "x.example.com")
    assert "--renew-before" in refused(cli, populated, *ISSUE, *args)


def test_issue_refuses_an_existing_name(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, "issue", "web", "-d", "www.example.com")
    assert "'web' already exists" in message


def test_issue_refuses_an_invalid_certificate_name(populated: Path, cli: Cli) -> None:
    assert "'a/b'" in refused(cli, populated, "issue", "a/b", "-d", "x.example.com")


def test_issue_refuses_an_unknown_target(populated: Path, cli: Cli) -> None:
    args = ("--target", "nowhere", "-d", "x.example.com")
    assert "Unknown target 'nowhere'" in refused(cli, populated, *ISSUE, *args)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param("[defaults]\nvalidity = 90\n", "defaults.validity", id="wrong-type"),
        pytest.param('[defaults]\nvalidity = "ninety"\n', "defaults.validity", id="bad-duration"),
        pytest.param('[defaults]\nkey_type = "dsa"\n', "defaults.key_type", id="bad-key-type"),
        pytest.param('[defaults]\ncolour = "red"\n', "defaults.colour", id="unknown-key"),
        pytest.param('[kms]\ntype = "vault"\n', "[kms]", id="unknown-backend"),
    ],
)
def test_a_malformed_config_is_refused_naming_the_key_and_the_file(
    populated: Path, cli: Cli, text: str, key: str
) -> None:
    config = populated / "certman.toml"
    config.write_text(text)
    message = refused(cli, populated, *ISSUE, "-d", "x.example.com")
    assert key in message
    assert str(config) in message


def test_invalid_toml_is_refused_naming_the_file(populated: Path, cli: Cli) -> None:
    config = populated / "certman.toml"
    config.write_text("[defaults\n")
    message = refused(cli, populated, "list")
    assert "not valid TOML" in message
    assert str(config) in message


def test_a_config_given_with_dash_dash_config_is_named_in_its_errors(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('[defaults]\nreuse_key = "no"\n')
    message = refused(cli, populated, "--config", str(config), "list")
    assert "defaults.reuse_key" in message
    assert str(config) in message


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("show", "nope"), id="show"),
        pytest.param(("renew", "nope"), id="renew"),
        pytest.param(("renew", "nope", "--force"), id="renew-force"),
        pytest.param(("revoke", "nope"), id="revoke"),
        pytest.param(("export", "nope", "--out", "/tmp/certman-never-written"), id="export"),
    ],
)
def test_an_unknown_certificate_name_is_refused(
    populated: Path, cli: Cli, args: tuple[str, ...]
) -> None:
    message = refused(cli, populated, *args)
    assert "No certificate named 'nope'" in message
    assert "certman list" in message
    assert not Path("/tmp/certman-never-written").exists()


def test_an_unknown_ca_is_refused(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, "ca", "show", "nope")
    assert "Unknown CA 'nope'" in message
    assert "corp, default" in message


def test_an_existing_export_target_without_force_is_refused(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cert.pem").write_text("mine\n")
    message = refused(cli, populated, "export", "web", "--out", str(out))
    assert "--force" in message
    assert [p.name for p in out.iterdir()] == ["cert.pem"]
    assert (out / "cert.pem").read_text() == "mine\n"


def test_a_missing_master_key_is_a_clear_failure_that_changes_nothing(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    (populated / "master.key").unlink()
    for args in (
        (*ISSUE, "-d", "x.example.com"),
        ("renew", "web", "--force"),
        ("export", "web", "--out", str(tmp_path / "out")),
        ("keys", "rotate"),
        ("ca", "create", "other"),
    ):
        message = refused(cli, populated, *args, exit_code=1)
        assert f"master key file {populated / 'master.key'} is missing" in message
        assert "backup" in message
    assert not (tmp_path / "out").exists()


def test_a_wrong_master_key_is_a_clear_failure_that_changes_nothing(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    init_home(load_config(other, other / "certman.toml"), ca_key_type=None)
    (populated / "master.key").write_bytes((other / "master.key").read_bytes())
    for args in (
        (*ISSUE, "-d", "x.example.com"),
        ("renew", "web", "--force"),
        ("export", "web", "--out", str(tmp_path / "out")),
        ("keys", "rotate"),
        ("ca", "create", "other"),
    ):
        message = refused(cli, populated, *args, exit_code=1)
        assert "master key does not match" in message, args
    assert not (tmp_path / "out").exists()


def test_renew_refuses_both_a_name_and_due(populated: Path, cli: Cli) -> None:
    assert "not both" in refused(cli, populated, "renew", "web", "--due")


def test_renew_refuses_neither_a_name_nor_due(populated: Path, cli: Cli) -> None:
    assert "NAME or --due" in refused(cli, populated, "renew")


def test_renew_refuses_dry_run_without_due(populated: Path, cli: Cli) -> None:
    assert "--dry-run goes with --due" in refused(cli, populated, "renew", "web", "--dry-run")


def test_renew_refuses_force_with_due(populated: Path, cli: Cli) -> None:
    assert "--force" in refused(cli, populated, "renew", "--due", "--force")


def test_ca_create_refuses_an_existing_name(populated: Path, cli: Cli) -> None:
    assert "'corp' already exists" in refused(cli, populated, "ca", "create", "corp")


def test_ca_create_refuses_a_wildcard_permitted_domain(populated: Path, cli: Cli) -> None:
    args = ("ca", "create", "wild", "--permitted-domain", "*.example.com")
    assert "--permitted-domain" in refused(cli, populated, *args)


def test_ca_create_refuses_an_unknown_key_type(populated: Path, cli: Cli) -> None:
    args = ("ca", "create", "x", "--key-type", "ed448")
    assert "'ed448'" in refused(cli, populated, *args)


def test_ca_create_refuses_a_zero_max_validity(populated: Path, cli: Cli) -> None:
    args = ("ca", "create", "x", "--max-validity", "0d")
    assert "--max-validity" in refused(cli, populated, *args)


def test_ca_create_refuses_an_invalid_name(populated: Path, cli: Cli) -> None:
    assert "'../x'" in refused(cli, populated, "ca", "create", "../x")


def test_a_usage_error_exits_2_without_a_traceback(populated: Path, cli: Cli) -> None:
    before = snapshot_home(populated)
    result = cli("issue", "new", "-d", "x.example.com", "--no-such-option")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert_unchanged(before, populated)


def test_debug_shows_the_traceback_of_a_refusal(populated: Path, cli: Cli) -> None:
    before = snapshot_home(populated)
    result = cli("--debug", *ISSUE, *CORP, "-d", "evil.com")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "PolicyError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")
    assert_unchanged(before, populated)


def test_certman_debug_in_the_environment_shows_the_traceback(populated: Path, cli: Cli) -> None:
    result = cli(*ISSUE, "-d", "exa mple.com", env={"CERTMAN_DEBUG": "1"})
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValidationError" in result.stderr


def test_a_wrong_master_key_names_the_ca_key_in_an_operators_words(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    init_home(load_config(other, other / "certman.toml"), ca_key_type=None)
    (populated / "master.key").write_bytes((other / "master.key").read_bytes())
    message = refused(
        cli, populated, "ca", "crl", "default", "--out", str(tmp_path / "crl.pem"), exit_code=1
    )
    assert message.startswith("The sealed intermediate key of CA default cannot be unsealed")
    assert "ca:default" not in message and "revision 0" not in message


def test_durations_in_messages_are_written_as_operators_write_them(
    populated: Path, cli: Cli
) -> None:
    args = ("--validity", "100d", "--renew-before", "2400h", "-d", "x.example.com")
    message = refused(cli, populated, *ISSUE, *args)
    assert "--renew-before (100d) must be shorter than --validity (100d)" in message


HUGE = "99999999999999999999d"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        pytest.param((*ISSUE, "--validity", HUGE, "-d", "x.example.com"), "--validity", id="issue"),
        pytest.param(
            (*ISSUE, "--renew-before", HUGE, "-d", "x.example.com"), "--renew-before", id="renew"
        ),
        pytest.param(("list", "--expiring", HUGE), "--expiring", id="list"),
        pytest.param(("ca", "create", "x", "--max-validity", HUGE), "--max-validity", id="ca"),
    ],
)
def test_a_duration_too_large_for_a_date_is_refused(
    populated: Path, cli: Cli, args: tuple[str, ...], option: str
) -> None:
    message = refused(cli, populated, *args)
    assert f"{option} '{HUGE}' is longer than certman accepts" in message
    assert "36525d" in message


def test_a_duration_too_large_in_the_defaults_is_refused_naming_the_file(
    populated: Path, cli: Cli
) -> None:
    config = populated / "certman.toml"
    config.write_text(f'[defaults]\nvalidity = "{HUGE}"\n')
    message = refused(cli, populated, *ISSUE, "-d", "x.example.com")
    assert "defaults.validity" in message and "longer than certman accepts" in message
    assert str(config) in message


def test_simulate_refuses_more_days_than_a_date_can_hold(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, "simulate", "--days", "99999999")
    assert "--days 99999999" in message and "36525" in message


def bulk_refused(cli: Cli, home: Path, csv: Path) -> str:
    message = refused(cli, home, "bulk-issue", str(csv))
    with sqlite3.connect(home / "certman.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM certificate")}
    assert names == {"web"}
    return message


def test_bulk_issue_refuses_a_validity_too_large_for_a_date(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "certs.csv"
    csv.write_text(f"a,a.example.com\nb,b.example.com,ec-p256,{HUGE}\n")
    message = bulk_refused(cli, populated, csv)
    assert f"{csv} line 2" in message and "longer than certman accepts" in message


def test_bulk_issue_refuses_a_file_that_is_not_utf8_naming_it(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "certs.csv"
    csv.write_bytes(b"a,a.example.com\nb\xff,b.example.com\n")
    message = bulk_refused(cli, populated, csv)
    assert str(csv) in message and "not UTF-8" in message


def test_bulk_issue_refuses_a_field_over_the_csv_limit_naming_the_line(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "certs.csv"
    csv.write_text("a,a.example.com\nb," + "x" * 200_000 + "\n")
    message = bulk_refused(cli, populated, csv)
    assert f"{csv} line 2" in message and "field limit" in message


def test_bulk_issue_refuses_a_fifth_column_naming_the_line(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "certs.csv"
    csv.write_text("a,a.example.com\nb,b.example.com,ec-p256,30d,extra\n")
    message = bulk_refused(cli, populated, csv)
    assert f"{csv} line 2 has 5 columns" in message


def certificate_names(home: Path) -> set[str]:
    with sqlite3.connect(home / "certman.db") as db:
        return {row[0] for row in db.execute("SELECT name FROM certificate")}


@pytest.mark.parametrize("name", ["web\n", "new\n", "web\r\n"])
def test_issue_refuses_a_certificate_name_ending_in_a_newline(
    populated: Path, cli: Cli, name: str
) -> None:
    message = refused(cli, populated, "issue", name, "-d", "ok.example.com")
    assert f"Certificate name {name!r} is not valid" in message
    assert certificate_names(populated) == {"web"}


def test_ca_create_refuses_a_name_ending_in_a_newline(populated: Path, cli: Cli) -> None:
    assert "CA name 'ca2\\n' is not valid" in refused(cli, populated, "ca", "create", "ca2\n")


def test_issue_refuses_a_domain_label_ending_in_a_newline(populated: Path, cli: Cli) -> None:
    message = refused(cli, populated, *ISSUE, "-d", "a\n.example.com")
    assert "'a\\n.example.com' is not a valid DNS name" in message


@pytest.mark.parametrize("section", ["issuers", "targets"])
def test_an_issuer_or_target_name_ending_in_a_newline_is_refused(
    populated: Path, cli: Cli, section: str
) -> None:
    config = populated / "certman.toml"
    config.write_text(f'[{section}."corp\\n"]\ntype = "private-ca"\n')
    message = refused(cli, populated, "list")
    assert f"name 'corp\\n' in {config} is not valid" in message


def test_issue_refuses_a_wildcard_name_over_253_characters(populated: Path, cli: Cli) -> None:
    body = ".".join(["a" * 63] * 3) + "."
    name = "*." + body + "b" * (254 - 2 - len(body))
    assert len(name) == 254
    assert "not a valid DNS name" in refused(cli, populated, *ISSUE, "-d", name)


@pytest.mark.parametrize("name", ["[::1", "::1]"])
def test_issue_refuses_an_ip_address_with_an_unmatched_bracket(
    populated: Path, cli: Cli, name: str
) -> None:
    message = refused(cli, populated, *ISSUE, "-d", name)
    assert f"{name!r} has an unmatched bracket" in message


@pytest.mark.parametrize(
    ("name", "named"),
    [("ab\u00adc.example.com", "U+00AD SOFT HYPHEN"), ("ab\u200bc.example.com", "U+200B")],
)
def test_issue_refuses_a_name_idna_mapping_would_change_silently(
    populated: Path, cli: Cli, name: str, named: str
) -> None:
    message = refused(cli, populated, *ISSUE, "-d", name)
    assert named in message and "'abc.example.com'" in message


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((*ISSUE, "-d", "x.example.com"), id="issue"),
        pytest.param(("ca", "create", "other"), id="ca-create"),
    ],
)
def test_an_empty_key_type_is_refused_not_taken_as_the_default(
    populated: Path, cli: Cli, args: tuple[str, ...]
) -> None:
    message = refused(cli, populated, *args, "--key-type", "")
    assert "Unknown --key-type ''" in message and "ec-p256" in message


@pytest.mark.parametrize("validity", ["1s", "59m59s"])
def test_issue_refuses_a_validity_under_an_hour(populated: Path, cli: Cli, validity: str) -> None:
    message = refused(cli, populated, *ISSUE, "--validity", validity, "-d", "x.example.com")
    assert f"--validity {validity} is shorter than the minimum of 1h" in message
    assert certificate_names(populated) == {"web"}


def test_issue_accepts_a_validity_of_an_hour(populated: Path, cli: Cli) -> None:
    cli.ok(*ISSUE, "--validity", "1h", "-d", "x.example.com")
    assert certificate_names(populated) == {"web", "new"}


def test_bulk_issue_refuses_a_validity_under_an_hour_naming_nothing_issued(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    csv = tmp_path / "certs.csv"
    csv.write_text("a,a.example.com\nb,b.example.com,ec-p256,1s\n")
    assert "shorter than the minimum of 1h" in bulk_refused(cli, populated, csv)


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_audit_list_refuses_a_limit_that_is_not_positive(
    populated: Path, cli: Cli, limit: str
) -> None:
    message = refused(cli, populated, "audit", "list", "--limit", limit)
    assert f"--limit must be a positive number of events, not {limit}" in message


def test_an_unknown_key_in_an_issuer_table_is_refused_before_that_issuer_is_used(
    populated: Path, cli: Cli
) -> None:
    config = populated / "certman.toml"
    config.write_text('[issuers.corp2]\ntype = "private-ca"\nca = "corp"\nmax_validty = "30d"\n')
    message = refused(cli, populated, *ISSUE, "--issuer", "default", "-d", "x.example.com")
    assert f"Unknown key issuers.corp2.max_validty in {config}" in message


def test_audit_list_takes_a_limit_beyond_what_the_database_holds_as_all(
    populated: Path, cli: Cli
) -> None:
    everything = cli.ok("audit", "list").stdout
    assert cli.ok("audit", "list", "--limit", "99999999999999999999").stdout == everything


def test_archive_get_refuses_a_revision_beyond_what_the_database_holds(
    populated: Path, cli: Cli, tmp_path: Path
) -> None:
    before = snapshot_home(populated)
    args = ("archive", "get", "web", "--revision", "99999999999999999999")
    result = cli(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--revision" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert_unchanged(before, populated)
    assert not (tmp_path / "out").exists()
