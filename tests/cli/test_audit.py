"""`certman audit`: every key or certificate action leaves a hash-chained event."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.cli.outcomes import assert_error
from tests.conftest import Cli


def events(cli: Cli) -> list[dict[str, Any]]:
    return json.loads(cli.ok("audit", "list", "--json").stdout)  # type: ignore[no-any-return]


def everything(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create", "corp")
    cli.ok("issue", "web", "-d", "www.example.com")
    cli.ok("renew", "web", "--force")
    cli.ok("export", "web", "--out", str(tmp_path / "out"))
    cli.ok("revoke", "web", "--reason", "superseded")
    cli.ok("keys", "rotate")


def execute(home: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(home / "certman.db") as db:
        db.execute(sql, args)


def test_every_action_appends_an_event(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    everything(cli, tmp_path)
    assert [(e["action"], e["subject"]) for e in events(cli)] == [
        ("ca.create", "default"),
        ("ca.create", "corp"),
        ("certificate.issue", "web"),
        ("certificate.renew", "web"),
        ("certificate.export", "web"),
        ("certificate.revoke", "web"),
        ("keys.rotate", "master-key"),
    ]


def test_events_carry_what_was_done(initialised_home: Path, cli: Cli, tmp_path: Path) -> None:
    everything(cli, tmp_path)
    by_action = {e["action"]: e for e in events(cli)}
    view = json.loads(cli.ok("show", "web", "--json").stdout)
    assert by_action["certificate.renew"]["details"]["revision"] == 2
    assert by_action["certificate.renew"]["details"]["serial"] == view["serial"]
    assert by_action["certificate.revoke"]["details"]["reason"] == "superseded"
    assert by_action["keys.rotate"]["details"]["new_version"] == 2
    assert [e["seq"] for e in events(cli)] == list(range(1, 8))
    assert all(e["actor"] and e["at"].endswith("Z") for e in events(cli))


def test_audit_list_prints_a_line_per_event(initialised_home: Path, cli: Cli) -> None:
    cli.ok("issue", "web", "-d", "www.example.com")
    lines = cli.ok("audit", "list").stdout.splitlines()
    assert len(lines) == 2
    assert "certificate.issue" in lines[1]
    assert len(cli.ok("audit", "list", "--limit", "1").stdout.splitlines()) == 1


def test_audit_verify_accepts_an_intact_chain(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    assert "7 audit events, chain intact" in cli.ok("audit", "verify").stdout


def test_audit_verify_names_an_event_whose_details_were_edited(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(
        initialised_home,
        "UPDATE audit_event SET details = replace(details, 'superseded', 'unspecified') "
        "WHERE seq = 6",
    )
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 6" in message
    assert "certificate.revoke web" in message
    assert "edited" in message


def test_audit_verify_detects_an_edit_whose_hash_was_recomputed(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from certman.inventory.audit import event_hash

    everything(cli, tmp_path)
    with sqlite3.connect(initialised_home / "certman.db") as db:
        prev, seq, at, action, subject, actor = db.execute(
            "SELECT prev_hash, seq, at, action, subject, actor FROM audit_event WHERE seq = 3"
        ).fetchone()
        details = '{"forged":true}'
        digest = event_hash(
            prev_hash=prev,
            seq=seq,
            at=datetime.fromisoformat(at).replace(tzinfo=UTC),  # stored as naive UTC
            action=action,
            subject=subject,
            actor=actor,
            details=details,
        )
        db.execute("UPDATE audit_event SET details = ?, hash = ? WHERE seq = 3", (details, digest))
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 4" in message
    assert "does not link" in message


def test_audit_verify_detects_a_deleted_event(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq = 4")
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 4 is missing" in message
    assert "deleted" in message


def test_audit_verify_detects_a_deleted_event_with_the_rest_renumbered(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq = 4")
    execute(initialised_home, "UPDATE audit_event SET seq = seq - 1 WHERE seq > 4")
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 4" in message


def test_doctor_reports_a_broken_audit_chain(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq = 2")
    result = cli("doctor")
    assert result.exit_code == 1
    assert "Audit event 2 is missing" in result.stdout
