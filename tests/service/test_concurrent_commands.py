"""The service and operators at once: `issue`, `bulk-issue`, `renew --due`, `serve --once`
and `keys rotate` started against each other, as real processes on one home, in many
interleavings. Whatever the order, each revision is issued once at the CA, each gets
exactly one issue or renew event, and archive, audit and doctor stay clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from certman.config import load_config
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.service.home import init_home
from certman.service.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
RENEWED = [f"r{i}" for i in range(12)]  # made due before every round
BULK_ROWS = 200
# Seconds per CA signature in the first command of a round: its revisions stay in flight
# long enough (a bulk batch ~1.6 s, one issuance 1.5 s) for the second to start meanwhile.
SIGN_DELAY = {"bulk": 0.008, "issue": 1.5}

pytestmark = pytest.mark.slow


@dataclass
class Home:
    """A certman home whose commands run as processes of their own, every CA signature logged."""

    path: Path
    signed: Path
    started: list[tuple[tuple[str, ...], subprocess.Popen[str]]] = field(default_factory=list)

    def env(self, sign_delay: float = 0.0) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAN_")}
        env.update(CERTMAN_HOME=str(self.path), CERTMAN_TEST_SIGNED=str(self.signed))
        env["CERTMAN_TEST_SIGN_DELAY"] = str(sign_delay)
        return env

    def start(self, *args: str, sign_delay: float = 0.0) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.service.certman_counting", *args],
            cwd=REPO,
            env=self.env(sign_delay),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append((args, process))
        return process

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args)
        out, err = process.communicate(timeout=300)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def wait_all(self) -> None:
        for args, process in self.started:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, (args, out[-2000:], err[-2000:])
        self.started.clear()

    def runtime(self) -> Runtime:
        return Runtime(config=load_config(self.path, self.path / "certman.toml"))

    def make_due(self, names: list[str]) -> None:
        rt = self.runtime()
        try:
            with rt.session() as session:
                session.execute(
                    update(ManagedCertificate)
                    .where(col(ManagedCertificate.name).in_(names))
                    .values(renewal_due_at=rt.clock.now() - timedelta(hours=1))
                )
                session.commit()
        finally:
            rt.engine.dispose()

    def bulk_file(self, tag: str) -> Path:
        path = self.path.parent / f"{tag}.csv"
        path.write_text(
            "".join(f"{tag}-{i},{tag}-{i}.example.com\n" for i in range(BULK_ROWS)),
            encoding="utf-8",
        )
        return path


def command(home: Home, kind: str, tag: str) -> tuple[str, ...]:
    return {
        "issue": ("issue", tag, "-d", f"{tag}.example.com"),
        "bulk": ("bulk-issue", str(home.bulk_file(tag))),
        "renew": ("renew", "--due"),
        "serve": ("serve", "--once"),
        "rotate": ("keys", "rotate"),
    }[kind]


def assert_each_revision_once(home: Home) -> None:
    """One CA signature and one issue/renew event per revision, and every check clean."""
    signed = Counter(home.signed.read_text().split("\n")[:-1])
    twice = {line: n for line, n in signed.items() if n > 1}
    assert not twice, f"revisions signed more than once: {sorted(twice)[:10]}"
    rt = home.runtime()
    try:
        with rt.session() as session:
            revisions = session.exec(
                select(ManagedCertificate.name, Revision.number, Revision.state).join(
                    Revision, col(Revision.certificate_id) == col(ManagedCertificate.id)
                )
            ).all()
        per_revision = activation_events(rt)
    finally:
        rt.engine.dispose()
    states = Counter(state for _, _, state in revisions)
    assert set(states) <= {"active", "superseded"}, states
    assert len(signed) == len(revisions), "every revision was signed exactly once"
    assert set(per_revision.values()) == {1}, [k for k, n in per_revision.items() if n > 1][:10]
    assert set(per_revision) == {(name, number) for name, number, _ in revisions}
    assert_checks_clean(home)


def activation_events(rt: Runtime) -> Counter[tuple[str, int]]:
    """How many certificate.issue or certificate.renew events each (name, revision) has."""
    with rt.session() as session:
        events = session.exec(
            select(AuditEvent.subject, AuditEvent.details).where(
                col(AuditEvent.action).in_(["certificate.issue", "certificate.renew"])
            )
        ).all()
    return Counter((name, json.loads(details)["revision"]) for name, details in events)


def assert_checks_clean(home: Home) -> None:
    for check in (("archive", "verify"), ("audit", "verify"), ("doctor",)):
        result = home.run(*check)
        assert result.returncode == 0, (check, result.stdout[-3000:], result.stderr[-3000:])


def new_home(tmp_path: Path) -> Home:
    path = tmp_path / "home"
    init_home(load_config(path, path / "certman.toml"), ca_key_type=None)
    return Home(path=path, signed=tmp_path / "signed.log")


# (started first, started second, seconds between): the first is an issuance, the second a
# command that would take its revisions for interrupted ones if it could; both orders.
ROUNDS = [
    (first, second, delay)
    for first in ("bulk", "issue")
    for second in ("renew", "serve", "rotate")
    for delay in (0.2, 0.9)
] + [
    ("renew", "serve", 0.0),
    ("serve", "renew", 0.3),
    ("renew", "renew", 0.0),
    ("rotate", "bulk", 0.3),
    ("renew", "bulk", 0.5),
]


def test_commands_and_the_service_at_once_issue_each_revision_once(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("".join(f"{n},{n}.example.com\n" for n in RENEWED), encoding="utf-8")
    home.ok("bulk-issue", str(fleet))
    for number, (first, second, delay) in enumerate(ROUNDS):
        home.make_due(RENEWED)
        home.start(*command(home, first, f"a{number}"), sign_delay=SIGN_DELAY.get(first, 0.0))
        time.sleep(delay)
        home.start(*command(home, second, f"b{number}"))
        if number % 4 == 0:  # now and then a third: the service and an operator renewing too
            home.start(*command(home, "serve" if second != "serve" else "renew", f"c{number}"))
        began = time.monotonic()
        home.wait_all()
        print(f"round {number} {first}/{second}: {time.monotonic() - began:.1f} s", file=sys.stderr)
    assert_each_revision_once(home)
    rt = home.runtime()
    try:
        with rt.session() as session:
            certificates = session.exec(select(ManagedCertificate)).all()
    finally:
        rt.engine.dispose()
    assert all(c.status == "active" and c.claimed_by is None for c in certificates)
    bulk_rounds = sum(kind == "bulk" for first, second, _ in ROUNDS for kind in (first, second))
    issue_rounds = sum(kind == "issue" for first, second, _ in ROUNDS for kind in (first, second))
    assert len(certificates) == len(RENEWED) + bulk_rounds * BULK_ROWS + issue_rounds


def test_a_killed_bulk_issue_is_finished_by_running_it_again(tmp_path: Path) -> None:
    """Issue item 5: rows already issued are skipped and counted, the rest issued."""
    home = new_home(tmp_path)
    rows = home.bulk_file("k")
    rows.write_text("".join(f"k-{i},k-{i}.example.com\n" for i in range(2500)), encoding="utf-8")
    process = home.start("bulk-issue", str(rows))
    rt = home.runtime()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once the first batch is in
            with rt.session() as session:
                active = session.exec(
                    select(ManagedCertificate.id).where(ManagedCertificate.status == "active")
                ).first()
            if active is not None:
                break
            time.sleep(0.05)
        process.kill()
        process.communicate()
        home.started.clear()
        with rt.session() as session:
            before = len(session.exec(select(ManagedCertificate.id)).all())
    finally:
        rt.engine.dispose()
    assert 0 < before < 2500, "the kill came while the run was under way"

    # renew --due finishes what was planned, never creates the rest; then the same input.
    home.ok("renew", "--due")
    out = home.ok("bulk-issue", str(rows))
    assert "already issued by an earlier run were skipped" in out
    issued, skipped = (int(n) for n in _counts(out))
    assert skipped >= 1000 and issued + skipped == 2500, out
    assert_each_revision_once(home)
    again = home.ok("bulk-issue", str(rows))
    assert "0 certificates issued, 0 failed; 2500 already issued" in again


def _counts(out: str) -> tuple[str, str]:
    import re

    found = re.search(r"(\d+) certificates issued, 0 failed; (\d+) already issued", out)
    assert found, out
    return found.group(1), found.group(2)
