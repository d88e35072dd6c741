"""`certman audit`: every key or certificate action leaves an HMAC-chained event."""

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


def rebuild_chain_with_sha256(home: Path, *, edit_seq: int, details: str) -> None:
    """What someone with write access to the database but no key could do: edit an event
    and recompute every link after it with the (public) SHA-256 scheme."""
    from datetime import UTC, datetime

    from certman.inventory.audit import event_hash

    with sqlite3.connect(home / "certman.db") as db:
        rows = db.execute(
            "SELECT seq, at, action, subject, actor, details, prev_hash FROM audit_event "
            "ORDER BY seq"
        ).fetchall()
        prev = None
        for seq, at, action, subject, actor, old_details, prev_hash in rows:
            if seq < edit_seq:
                prev = db.execute("SELECT hash FROM audit_event WHERE seq = ?", (seq,)).fetchone()[
                    0
                ]
                continue
            new_details = details if seq == edit_seq else old_details
            digest = event_hash(
                prev_hash=prev or prev_hash,
                seq=seq,
                at=datetime.fromisoformat(at).replace(tzinfo=UTC),  # stored as naive UTC
                action=action,
                subject=subject,
                actor=actor,
                details=new_details,
            )
            db.execute(
                "UPDATE audit_event SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (new_details, prev or prev_hash, digest, seq),
            )
            prev = digest


def test_audit_verify_detects_an_edit_whose_chain_was_rebuilt_without_the_key(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    rebuild_chain_with_sha256(initialised_home, edit_seq=3, details='{"forged":true}')
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 3 (certificate.issue web) was edited" in message
    assert "MAC" in message


def test_audit_verify_detects_a_rebuilt_chain_whose_audit_key_was_deleted(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_key")
    rebuild_chain_with_sha256(initialised_home, edit_seq=1, details='{"forged":true}')
    message = assert_error(cli("audit", "verify"), 1)
    assert f"Audit event 7 is not the one {initialised_home / 'audit.head'} recorded" in message
    assert "rewritten" in message


def test_audit_verify_detects_a_moved_key_boundary(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    """Passing keyed events off as older, unkeyed ones makes the audit key fail to unseal."""
    everything(cli, tmp_path)
    execute(initialised_home, "UPDATE audit_key SET first_seq = 100")
    rebuild_chain_with_sha256(initialised_home, edit_seq=3, details='{"forged":true}')
    message = assert_error(cli("audit", "verify"), 1)
    assert "The sealed audit key (events from 100 on)" in message
    assert "cannot be unsealed" in message


def test_audit_verify_detects_deleted_newest_events(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq >= 6")
    message = assert_error(cli("audit", "verify"), 1)
    assert "ends at event 5" in message
    assert "records event 7" in message
    assert "newest events were deleted" in message


def test_the_anchor_records_the_newest_event_and_is_private(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    anchor = initialised_home / "audit.head"
    assert anchor.stat().st_mode & 0o777 == 0o600
    head = json.loads(anchor.read_text())
    assert {k: head[k] for k in ("v", "seq", "hash")} == {
        "v": 2,
        "seq": 7,
        "hash": events(cli)[-1]["hash"],
    }
    assert len(head["mac"]) == 64 and head["mac"] != head["hash"]  # its own MAC
    assert "event 7 anchored in" in cli.ok("audit", "verify").stdout


def test_a_tampered_chain_keeps_its_anchor_as_evidence(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    """Deleting the newest events and then appending must not hide the deletion."""
    everything(cli, tmp_path)
    anchored = (initialised_home / "audit.head").read_text()
    execute(initialised_home, "DELETE FROM audit_event WHERE seq >= 6")
    cli.ok("issue", "api", "-d", "api.example.com")  # new events 6 and 7 are appended
    cli.ok("issue", "app", "-d", "app.example.com")
    assert (initialised_home / "audit.head").read_text() == anchored
    message = assert_error(cli("audit", "verify"), 1)
    assert "Audit event 7 is not the one" in message


def test_doctor_reports_deleted_newest_events(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq = 7")
    result = cli("doctor")
    assert result.exit_code == 1
    assert "newest events were deleted" in result.stdout


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


def test_deleting_the_newest_events_and_the_anchor_is_detected(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    execute(initialised_home, "DELETE FROM audit_event WHERE seq >= 6")
    (initialised_home / "audit.head").unlink()
    message = assert_error(cli("audit", "verify"), 1)
    assert f"The audit head anchor {initialised_home / 'audit.head'} is missing" in message
    assert "appended events 1-5 under the audit key" in message
    doctor = cli("doctor")
    assert doctor.exit_code == 1
    assert "is missing although this home appended" in doctor.stdout + doctor.stderr


def test_an_anchor_rewritten_from_the_database_is_detected(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    """The head set back to event 5 with the sequence and hash the database holds: without
    the audit key, the anchor's MAC cannot be made."""
    everything(cli, tmp_path)
    fifth = events(cli)[4]
    anchor = initialised_home / "audit.head"
    stale_mac = json.loads(anchor.read_text())["mac"]
    execute(initialised_home, "DELETE FROM audit_event WHERE seq >= 6")
    for forged_mac in (fifth["hash"], stale_mac, "0" * 64):
        forged = {"v": 2, "seq": 5, "hash": fifth["hash"], "mac": forged_mac}
        anchor.write_text(json.dumps(forged))
        message = assert_error(cli("audit", "verify"), 1)
        assert "does not carry a valid MAC under the audit key" in message
        assert cli("doctor").exit_code == 1


def seal_the_audit_key_as_before_anchor_macs(home: Path) -> None:
    """Make the home look like one from before anchors had a MAC: its audit key sealed
    under the older context, its anchor in the older form."""
    from certman.config import load_config
    from certman.inventory.audit_seal import audit_key_context, sealed_audit_key_context
    from certman.models import WrappedKey
    from certman.service.runtime import Runtime

    rt = Runtime(config=load_config(home, home / "certman.toml"))
    with sqlite3.connect(home / "certman.db") as db:
        ((first_seq, text),) = db.execute("SELECT first_seq, sealed_key FROM audit_key")
        sealed = WrappedKey.from_json(text)
        secret = rt.key_wrapper.unwrap(sealed, sealed_audit_key_context(sealed, first_seq))
        older = rt.key_wrapper.wrap(secret, audit_key_context(first_seq)).to_json()
        db.execute("UPDATE audit_key SET sealed_key = ?", (older,))
    rt.engine.dispose()


def test_a_home_with_an_anchor_of_the_older_form_verifies_and_is_upgraded(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    seal_the_audit_key_as_before_anchor_macs(initialised_home)
    anchor = initialised_home / "audit.head"
    last = events(cli)[-1]
    anchor.write_text(json.dumps({"seq": 7, "mac": last["hash"]}, separators=(",", ":")) + "\n")
    assert "event 7 anchored in" in cli.ok("audit", "verify").stdout
    assert "chain intact" in cli.ok("doctor").stdout

    cli.ok("issue", "api", "-d", "api.example.com")  # the next append writes the new form
    head = json.loads(anchor.read_text())
    assert head["v"] == 2 and head["seq"] == len(events(cli)) and head["mac"] != head["hash"]
    assert "anchored in" in cli.ok("audit", "verify").stdout
    # From now on an anchor in the older form is refused for any later event.
    eighth = events(cli)[7]
    execute(initialised_home, "DELETE FROM audit_event WHERE seq > 8")
    anchor.write_text(json.dumps({"seq": 8, "mac": eighth["hash"]}))
    message = assert_error(cli("audit", "verify"), 1)
    assert "is in the older form, without a MAC, but records event 8" in message


def test_an_anchor_downgraded_to_the_older_form_is_detected(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    """The head set back to event 5 in the form anchors had before they carried a MAC."""
    everything(cli, tmp_path)
    fifth = events(cli)[4]
    execute(initialised_home, "DELETE FROM audit_event WHERE seq >= 6")
    (initialised_home / "audit.head").write_text(json.dumps({"seq": 5, "mac": fifth["hash"]}))
    message = assert_error(cli("audit", "verify"), 1)
    assert "is in the older form, without a MAC, but records event 5" in message
    assert cli("doctor").exit_code == 1


def test_removing_the_anchor_macs_mark_from_the_audit_key_is_detected(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    with sqlite3.connect(initialised_home / "certman.db") as db:
        ((text,),) = db.execute("SELECT sealed_key FROM audit_key")
        doc = json.loads(text)
        del doc["extra"]["anchors_from"]
        db.execute("UPDATE audit_key SET sealed_key = ?", (json.dumps(doc),))
    message = assert_error(cli("audit", "verify"), 1)
    assert "The sealed audit key (events from 1 on)" in message


def test_an_intact_home_passes_audit_verify_and_doctor(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    everything(cli, tmp_path)
    assert "7 audit events, chain intact" in cli.ok("audit", "verify").stdout
    assert "chain intact" in cli.ok("doctor").stdout
