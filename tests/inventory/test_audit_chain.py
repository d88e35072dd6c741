"""The audit chain: HMAC under a sealed key, a head anchored per home, older events upgraded."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from certman.config import load_config
from certman.inventory.audit import append_event, event_hash, event_mac, verify_chain
from certman.inventory.database import MIGRATIONS, make_engine
from certman.inventory.tables import AuditEvent, AuditKey
from certman.keywrap.local import LocalMasterKey
from certman.models import EncryptionContext, KeyType, WrappedKey
from certman.service.home import init_home
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def runtime(home: Path) -> Runtime:
    return Runtime(config=load_config(home, home / "certman.toml"))


def issue(rt: Runtime, name: str) -> None:
    lifecycle = Lifecycle(rt)
    lifecycle.plan(
        IssueSpec(
            name=name,
            domains=(f"{name}.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=30),
        )
    )
    lifecycle.advance(name)


def database_at_0005_with_events(home: Path, count: int) -> None:
    """A database as certman left it before migration 0006: SHA-256 links, no audit key."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    home.mkdir(mode=0o700)
    engine = make_engine(f"sqlite:///{home / 'certman.db'}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0005")
    engine.dispose()
    prev = "0" * 64
    with sqlite3.connect(home / "certman.db") as db:
        for seq in range(1, count + 1):
            fields = dict(
                prev_hash=prev,
                seq=seq,
                at=NOW,
                action="certificate.issue",
                subject=f"old{seq}",
                actor="op@host",
                details="{}",
            )
            digest = event_hash(**fields)  # type: ignore[arg-type]
            db.execute(
                "INSERT INTO audit_event (seq, at, action, subject, actor, details, prev_hash, "
                "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    NOW.replace(tzinfo=None).isoformat(sep=" "),
                    "certificate.issue",
                    f"old{seq}",
                    "op@host",
                    "{}",
                    prev,
                    digest,
                ),
            )
            prev = digest
    LocalMasterKey.create(home / "master.key")


def test_events_from_before_the_upgrade_keep_their_links_and_are_reported(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    database_at_0005_with_events(home, 3)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)  # migrates to head
    rt = runtime(home)
    issue(rt, "web")
    with rt.session() as session:
        check = verify_chain(session)
        (key,) = session.exec(select(AuditKey)).all()
        hashes = [e.hash for e in session.exec(select(AuditEvent).order_by(AuditEvent.seq))]
    assert check.ok, check.message
    assert (check.events, check.keyed_from, key.first_seq) == (5, 4, 4)
    assert "Events 1-3 predate the audit key" in check.message
    assert hashes[0] == event_hash(
        prev_hash="0" * 64,
        seq=1,
        at=NOW,
        action="certificate.issue",
        subject="old1",
        actor="op@host",
        details="{}",
    )


def test_the_first_keyed_event_protects_the_events_before_it(tmp_path: Path) -> None:
    """An edit of an unkeyed event, re-linked with SHA-256, breaks the MAC'd link after it."""
    home = tmp_path / "home"
    database_at_0005_with_events(home, 3)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    rt = runtime(home)
    with sqlite3.connect(home / "certman.db") as db:
        prev = db.execute("SELECT hash FROM audit_event WHERE seq = 2").fetchone()[0]
        digest = event_hash(
            prev_hash=prev,
            seq=3,
            at=NOW,
            action="certificate.issue",
            subject="forged",
            actor="op@host",
            details="{}",
        )
        db.execute("UPDATE audit_event SET subject = 'forged', hash = ? WHERE seq = 3", (digest,))
    with rt.session() as session:
        check = verify_chain(session)
    assert not check.ok
    assert "Audit event 4 does not link to event 3" in check.message


def test_a_database_without_the_key_yet_says_its_events_are_unkeyed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database_at_0005_with_events(home, 2)
    engine = make_engine(f"sqlite:///{home / 'certman.db'}")
    from certman.inventory.database import migrate

    migrate(engine)
    engine.dispose()
    with runtime(home).session() as session:
        check = verify_chain(session)
    assert check.ok and check.keyed_from is None
    assert "Events 1-2 predate the audit key" in check.message
    assert "could rebuild them" in check.message


def test_each_home_on_a_shared_database_anchors_the_head_it_appended(tmp_path: Path) -> None:
    """Two instances, one database: deleting the newest events fails the verify of the home
    that appended them; the other home's anchored head is still in the chain."""
    first = tmp_path / "first"
    init_home(load_config(first, first / "certman.toml"), ca_key_type=None)
    second = tmp_path / "second"
    second.mkdir(mode=0o700)
    (second / "certman.toml").write_text(f'[database]\nurl = "sqlite:///{first / "certman.db"}"\n')
    shutil.copy2(first / "master.key", second / "master.key")
    issue(runtime(first), "one")
    issue(runtime(second), "two")
    with sqlite3.connect(first / "certman.db") as db:
        db.execute("DELETE FROM audit_event WHERE seq = (SELECT max(seq) FROM audit_event)")
    with runtime(first).session() as session:
        assert verify_chain(session).ok
    with runtime(second).session() as session:
        check = verify_chain(session)
    assert not check.ok
    assert "newest events were deleted" in check.message


class CountingWrapper:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.wrapper_type = inner.wrapper_type  # type: ignore[attr-defined]
        self.unsealed: list[str] = []

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey:
        return self.inner.wrap(plaintext, context)  # type: ignore[attr-defined, no-any-return]

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        self.unsealed.append(context.purpose)
        return self.inner.unwrap(wrapped, context)  # type: ignore[attr-defined, no-any-return]


def test_the_audit_key_is_unsealed_once_per_process(initialised_home: Path) -> None:
    rt = runtime(initialised_home)
    counting = CountingWrapper(rt.key_wrapper)
    rt.__dict__["key_wrapper"] = counting
    for i in range(3):
        with rt.session() as session:
            append_event(session, NOW, "test.append", "x", i=i)
            session.commit()
    with rt.session() as session:
        assert verify_chain(session).ok
    assert counting.unsealed.count("audit-key") == 1


def test_a_session_without_the_runtimes_seal_cannot_append(initialised_home: Path) -> None:
    from sqlmodel import Session

    engine = runtime(initialised_home).engine
    with Session(engine) as session, pytest.raises(RuntimeError, match="audit seal"):
        append_event(session, NOW, "test.append", "x")


def test_deleting_every_keyed_event_is_detected_without_an_anchor(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database_at_0005_with_events(home, 3)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    (home / "audit.head").unlink()  # as on a home that never appended
    with sqlite3.connect(home / "certman.db") as db:
        db.execute("DELETE FROM audit_event WHERE seq > 3")
    with runtime(home).session() as session:
        check = verify_chain(session)
    assert not check.ok
    assert "covers events from 4 on but the chain ends at event 3" in check.message


def test_event_macs_cover_the_same_bytes_as_every_chain_appended_so_far() -> None:
    # Chains already in databases were MAC'd over exactly this body; it must never change.
    fields = dict(
        prev_hash="ab" * 32,
        seq=7,
        at=NOW,
        action="certificate.issue",
        subject="wéb",
        actor="root@host",
        details='{"bulk":true,"serial":"1f"}',
    )
    body = "ab" * 32 + json.dumps(
        [7, NOW.isoformat(), "certificate.issue", "wéb", "root@host", fields["details"]],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    key = b"k" * 32
    assert event_mac(key, **fields) == hmac.new(key, body.encode(), hashlib.sha256).hexdigest()  # type: ignore[arg-type]
    assert event_hash(**fields) == hashlib.sha256(body.encode()).hexdigest()  # type: ignore[arg-type]


def test_appends_from_processes_at_once_never_take_the_same_sequence_number(
    initialised_home: Path,
) -> None:
    """An append that is a session's first statement still reads the last event under the
    write lock (SQLite's driver begins a transaction only at the first write)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        failures = pool.map(_append_many, [(str(initialised_home), i) for i in range(3)])
    assert failures == [[], [], []]
    rt = Runtime(config=load_config(initialised_home, initialised_home / "certman.toml"))
    with rt.session() as session:
        check = verify_chain(session)
    rt.engine.dispose()
    assert check.ok, check.message
    assert check.events >= 3 * 40


def _append_many(job: tuple[str, int]) -> list[str]:
    home, worker = Path(job[0]), job[1]
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    failures = []
    for n in range(40):
        try:
            with rt.session() as session:
                append_event(session, rt.clock.now(), "test.append", f"w{worker}", n=n)
                session.commit()
        except Exception as e:  # what the test is about: none may fail
            failures.append(type(e).__name__)
    rt.engine.dispose()
    return failures
