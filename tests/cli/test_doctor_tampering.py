"""`certman doctor` against a tampered inventory: drifted facts and damaged or swapped keys."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from certman.clock import FrozenClock
from tests.cli.test_doctor import areas
from tests.conftest import Cli


def sql(home: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(home / "certman.db") as db:
        db.execute(statement, params)


def one(home: Path, query: str, *params: object) -> object:
    with sqlite3.connect(home / "certman.db") as db:
        return db.execute(query, params).fetchone()[0]


FAR = "2099-01-01 00:00:00.000000"


def test_an_untampered_home_passes_the_fact_and_sealed_key_checks(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "api", "-d", "api.example.com", "--renew-before", "10d")
    cli.ok("renew", "web", "--force")
    result = cli.ok("doctor")
    marks = areas(result.stdout)
    assert marks.get("facts") == "ok", result.stdout
    assert marks.get("sealed keys") == "ok", result.stdout
    assert "2 current sealed keys unseal and match their certificates" in result.stdout


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("not_after", FAR),
        ("serial", "1234abcd"),
        ("fingerprint_sha256", "ab" * 32),
        ("renewal_due_at", FAR),
        ("not_before", "2001-01-01 00:00:00.000000"),
    ],
)
def test_doctor_fails_on_a_certificate_row_fact_that_is_not_its_certificates(
    initialised_home: Path, cli: Cli, column: str, value: str
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "api", "-d", "api.example.com")
    sql(initialised_home, f"UPDATE certificate SET {column} = ? WHERE name = 'web'", value)
    result = cli("doctor")
    assert result.exit_code == 1, result.stdout
    assert "[FAIL] facts web" in result.stdout
    line = next(x for x in result.stdout.splitlines() if "facts web" in x)
    assert f"certificate {column} is " in line
    assert "api" not in line
    assert "facts api" not in result.stdout


def test_doctor_fails_when_both_rows_were_moved_to_agree_with_each_other(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    sql(initialised_home, "UPDATE certificate SET not_after = ?, renewal_due_at = ?", FAR, FAR)
    sql(initialised_home, "UPDATE revision SET not_after = ?", FAR)
    result = cli("doctor")
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "facts web" in x)
    assert "certificate not_after is 2099-01-01T00:00:00Z" in line
    assert "revision 1 not_after is 2099-01-01T00:00:00Z" in line
    assert "certificate renewal_due_at" in line


def test_doctor_fails_when_the_stored_certificate_is_not_the_one_the_audit_trail_recorded(
    initialised_home: Path, cli: Cli
) -> None:
    """Rows and certificate made to agree (another certificate's PEM and facts copied in):
    only the audit trail's certificate.issue event still says what was issued."""
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "other", "-d", "other.example.com", "--validity", "300d")
    columns = "serial, fingerprint_sha256, not_before, not_after"
    with sqlite3.connect(initialised_home / "certman.db") as db:
        other = db.execute(
            f"SELECT {columns}, certificate_pem FROM revision WHERE certificate_id = "
            "(SELECT id FROM certificate WHERE name = 'other')"
        ).fetchone()
        due = db.execute("SELECT renewal_due_at FROM certificate WHERE name = 'other'").fetchone()
        web = "(SELECT id FROM certificate WHERE name = 'web')"
        db.execute(
            "UPDATE revision SET serial=?, fingerprint_sha256=?, not_before=?, not_after=?, "
            f"certificate_pem=? WHERE certificate_id = {web}",
            other,
        )
        db.execute(
            "UPDATE certificate SET serial=?, fingerprint_sha256=?, not_before=?, not_after=?, "
            "renewal_due_at=?, renew_before_seconds=NULL WHERE name = 'web'",
            (*other[:4], due[0]),
        )
    result = cli("doctor")
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "facts web" in x)
    assert "the certificate stored for revision 1 is not the one issued" in line


# --- sealed keys (issue 20 item 7) -----------------------------------------------------------


def _damage(home: Path, name: str) -> None:
    text = str(one(home, _KEY_OF, name))
    doc = json.loads(text)
    ct = bytearray(base64.b64decode(doc["ct"]))
    ct[-1] ^= 0x01
    doc["ct"] = base64.b64encode(bytes(ct)).decode()
    sql(home, _SET_KEY, json.dumps(doc), name)


_KEY_OF = (
    "SELECT sealed_key FROM revision WHERE certificate_id = "
    "(SELECT id FROM certificate WHERE name = ?)"
)
_SET_KEY = (
    "UPDATE revision SET sealed_key = ? WHERE certificate_id = "
    "(SELECT id FROM certificate WHERE name = ?)"
)


def test_doctor_fails_on_a_damaged_sealed_key_naming_the_certificate(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "api", "-d", "api.example.com")
    _damage(initialised_home, "web")
    result = cli("doctor")
    assert result.exit_code == 1
    assert "[FAIL] sealed key web" in result.stdout
    assert "web revision 1: the sealed key cannot be unsealed" in result.stdout
    assert "sealed key api" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_fails_on_two_swapped_sealed_keys_naming_both(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("issue", "api", "-d", "api.example.com")
    web, api = (str(one(initialised_home, _KEY_OF, n)) for n in ("web", "api"))
    sql(initialised_home, _SET_KEY, api, "web")
    sql(initialised_home, _SET_KEY, web, "api")
    result = cli("doctor")
    assert result.exit_code == 1
    assert "[FAIL] sealed key web" in result.stdout
    assert "[FAIL] sealed key api" in result.stdout


def test_renew_force_replaces_a_damaged_sealed_key_and_doctor_is_green_again(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    _damage(initialised_home, "web")
    result = cli.ok("renew", "web", "--force")
    assert "revision 2" in result.stdout
    assert areas(cli.ok("doctor").stdout).get("sealed keys") == "ok"


def test_renew_force_of_a_reused_damaged_key_is_refused_clearly(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--reuse-key")
    _damage(initialised_home, "web")
    result = cli("renew", "web", "--force")
    assert result.exit_code == 1
    assert "reuses its key on renewal" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert one(initialised_home, "SELECT count(*) FROM revision") == 1


def test_the_sealed_key_check_of_a_thousand_certificates_takes_seconds(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock, tmp_path: Path
) -> None:
    """Unsealing with the local master key is cheap: 1,000 keys in well under 10 s."""
    from certman.config import load_config
    from certman.service.checks import CheckReport, check_facts, check_sealed_keys
    from certman.service.runtime import Runtime

    rows = "\n".join(f"c{i},c{i}.example.com" for i in range(1000))
    (tmp_path / "many.csv").write_text("name,domains\n" + rows + "\n")
    cli.ok("bulk-issue", str(tmp_path / "many.csv"))
    rt = Runtime(config=load_config(initialised_home, initialised_home / "certman.toml"))
    report = CheckReport()
    started = time.monotonic()
    check_sealed_keys(rt, report)
    elapsed = time.monotonic() - started
    assert [c.message for c in report.checks] == [
        "1000 current sealed keys unseal and match their certificates."
    ]
    assert elapsed < 10, elapsed
    facts = CheckReport()
    check_facts(rt, facts)  # what the bulk path recorded agrees with its certificates
    assert [(c.area, c.ok) for c in facts.checks] == [("facts", True)]


# --- renewal decisions use checked facts ----------------------------------------------------


def test_renew_due_renews_a_due_certificate_whose_row_was_pushed_to_2099(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    cli.ok("issue", "api", "-d", "api.example.com", "--validity", "90d")
    sql(
        initialised_home,
        "UPDATE certificate SET not_after = ?, renewal_due_at = ? WHERE name = 'web'",
        FAR,
        FAR,
    )
    cli_clock.advance(timedelta(days=21))  # web's real renewal time (2/3 of 30 days) passed
    assert cli.ok("renew", "--due", "--dry-run").stdout.strip() == "would renew web"
    result = cli.ok("renew", "--due")
    assert result.stdout.strip() == "web: revision 2 active."
    assert one(initialised_home, "SELECT current_revision FROM certificate WHERE name='web'") == 2
    assert "facts" in areas(cli.ok("doctor").stdout)


def test_renew_name_is_not_told_not_due_by_a_renewal_time_pushed_out(
    initialised_home: Path, cli: Cli, cli_clock: FrozenClock
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    sql(initialised_home, "UPDATE certificate SET renewal_due_at = ?", FAR)
    cli_clock.advance(timedelta(days=21))
    assert "revision 2 active" in cli.ok("renew", "web").stdout


def test_simulate_renews_by_the_certificate_not_by_a_row_pushed_to_2099(
    initialised_home: Path, cli: Cli
) -> None:
    cli.ok("issue", "web", "-d", "www.example.com", "--validity", "30d")
    sql(initialised_home, "UPDATE certificate SET not_after = ?, renewal_due_at = ?", FAR, FAR)
    result = json.loads(cli.ok("simulate", "--days", "25", "--json").stdout)
    (web,) = result["certificates"]
    assert not web["not_after"].startswith("2099")
    assert len(web["renewals"]) == 1, web
    assert one(initialised_home, "SELECT not_after FROM certificate").startswith("2099"), (
        "simulate only reads the real inventory"
    )
