"""A reconcile tick over 100,000 managed certificates with 1 % due (private CA).

The inventory: 1,000 certificates issued for real with `issue_many` (they are the 1 % due,
their renewal moved into the past), and 99,000 more cloned by SQL insert, due later. 15 %
of the clones are inside the notice thresholds (8-29 days left, renewing 7 days before
expiry, as a `renew_before = "7d"` policy does), so the first tick also records and sends
some 15,000 expiry notices to a local webhook; later ticks find nothing new.

Measured twice, on two copies of that inventory:
- in a child process with the service's own objects (scheduler.service.Service): the
  first tick, a second tick with nothing due, one /metrics scrape;
- a real `certman serve --once` process, twice (the first tick, then an idle one): wall
  time and peak RSS (os.wait4). The issue's goal: peak RSS of `certman serve` at most
  200 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text, update

from bench.common import fresh_runtime, table

GOAL_MIB = 200
BATCH = 10_000
NOTICE_SHARE = 0.15


def populate(total: int, real: int) -> tuple[Path, int]:
    """The home, and how many clones are inside the notice thresholds."""
    from certman.inventory.tables import ManagedCertificate
    from certman.models import KeyType
    from certman.service.bulk import issue_many
    from certman.service.lifecycle import IssueSpec

    rt = fresh_runtime("certman-bench-tick-")
    specs = [
        IssueSpec(
            name=f"real-{i:05d}",
            domains=(f"real-{i}.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=90),
        )
        for i in range(real)
    ]
    report = issue_many(rt, specs)
    assert len(report.issued) == real, report.failed
    now = datetime.now(UTC).replace(microsecond=0)
    cert_table = ManagedCertificate.__table__  # type: ignore[attr-defined]
    noticed = 0
    every = round(1 / NOTICE_SHARE * 100)  # clones i with i % every < 100 are in the window
    with rt.session() as session:
        # Through the column's type, so the value is stored as certman stores datetimes (a
        # raw SQL string of another format would not compare with them as times do).
        session.execute(update(cert_table).values(renewal_due_at=now - timedelta(hours=1)))
        template = (
            session.execute(text("SELECT * FROM certificate WHERE name = 'real-00000'"))
            .mappings()
            .one()
        )
        for start in range(0, total - real, BATCH):
            rows = []
            for i in range(start, min(total - real, start + BATCH)):
                row = {k: v for k, v in template.items() if k != "id"}
                if i % every < 100:  # inside the 30d and 14d notices, renewing at 7d
                    noticed += 1
                    # 8..29 days and 1..12 hours left: none crosses a threshold mid-run
                    left = timedelta(days=8 + i % 22, hours=1 + i % 12)
                    due = now + left - timedelta(days=7)
                    row["renew_before_seconds"] = 7 * 86400
                else:
                    left = timedelta(days=31 + i % 59, seconds=i % 86400)  # 31..89 days left
                    due = now + left - timedelta(days=30)
                row.update(
                    name=f"clone-{i:06d}",
                    domains=f'["clone-{i}.example.com"]',
                    serial=f"{i:x}",
                    not_before=now + left - timedelta(days=90),
                    not_after=now + left,
                    renewal_due_at=due,
                    created_at=now,
                    updated_at=now,
                )
                rows.append(row)
            session.execute(insert(cert_table), rows)
        session.commit()
        session.execute(text("ANALYZE"))
    rt.engine.dispose()
    return rt.config.home, noticed


def child(home: Path) -> None:
    """One `certman serve`-equivalent process: the Service, two ticks, one scrape."""
    from certman.scheduler.service import Service

    from certman.config import load_config
    from certman.service.runtime import Runtime

    service = Service(Runtime(config=load_config(home, home / "certman.toml")))
    service.lock.acquire()
    try:
        started = time.perf_counter()
        first = service.reconciler.tick()
        tick = time.perf_counter() - started
        started = time.perf_counter()
        second = service.reconciler.tick()
        idle = time.perf_counter() - started
        started = time.perf_counter()
        sizes: list[int] = []
        service.metrics.write(lambda chunk: sizes.append(len(chunk)))
        scrape, scrape_seconds = sum(sizes), time.perf_counter() - started
    finally:
        service.lock.release()
    result = {
        "renewed": len(first.renewed),
        "failed": len(first.failed),
        "notified": first.notified,
        "tick_seconds": tick,
        "idle_tick_seconds": idle,
        "idle_renewed": len(second.renewed),
        "idle_notified": second.notified,
        "scrape_seconds": scrape_seconds,
        "scrape_bytes": scrape,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


def serve_once(home: Path) -> dict[str, Any]:
    """`certman serve --once` as its own process: wall time, peak RSS, what it printed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "certman", "--home", str(home), "serve", "--once"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # one INFO line per renewal: not needed here
        text=True,
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not the bench's
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": time.perf_counter() - started,
        "max_rss_mib": usage.ru_maxrss / 1024,
        "code": process.returncode,
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
    }


class _Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=1_000, help="issued for real, all due")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    started = time.perf_counter()
    home, noticed = populate(args.total, args.real)
    populate_seconds = time.perf_counter() - started
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    # notifications on, as in production: the expiry query runs on every tick
    (home / "certman.toml").write_text(
        f'[notify.webhook]\nurl = "http://127.0.0.1:{sink.server_address[1]}/"\n'
    )
    copy = home.parent / "copy"
    shutil.copytree(home, copy)
    out = subprocess.run(
        [sys.executable, "-m", "bench.serve_tick", "--child", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    in_process_received = _Sink.received
    first = serve_once(copy)
    first["received"] = _Sink.received - in_process_received
    idle = serve_once(copy)
    idle["received"] = _Sink.received - in_process_received - first["received"]
    sink.shutdown()
    shutil.rmtree(home.parent, ignore_errors=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"Reconcile tick, {args.total:,} certificates, {args.real:,} due, {noticed:,} inside "
        f"the notice thresholds (private CA, SQLite, local webhook); inventory built in "
        f"{populate_seconds:.0f} s\n"
    )
    print(
        table(
            ["measure", "value"],
            [
                ["first tick: renewals + notices", f"{r['tick_seconds']:.1f} s"],
                ["renewed / failed", f"{r['renewed']:,} / {r['failed']}"],
                ["notices sent (webhook received)", f"{r['notified']:,} ({in_process_received:,})"],
                ["next tick, nothing due or new", f"{r['idle_tick_seconds'] * 1000:.0f} ms"],
                [
                    "/metrics scrape",
                    f"{r['scrape_seconds']:.2f} s, {r['scrape_bytes'] / 2**20:.1f} MiB",
                ],
                ["peak RSS, service objects in a child process", f"{r['max_rss_mib']:.0f} MiB"],
                [
                    "`certman serve --once`, first tick",
                    f"{first['seconds']:.1f} s, peak RSS {first['max_rss_mib']:.0f} MiB "
                    f"({first['summary']} webhook received {first['received']:,})",
                ],
                [
                    "`certman serve --once`, next tick",
                    f"{idle['seconds']:.1f} s, peak RSS {idle['max_rss_mib']:.0f} MiB "
                    f"({idle['summary']} webhook received {idle['received']:,})",
                ],
                ["goal", f"peak RSS at most {GOAL_MIB} MiB"],
            ],
        )
    )
    checks = {
        "every due certificate renewed": r["renewed"] == args.real,
        "every notice sent on the first tick": r["notified"] == noticed,
        "nothing new on the next tick": r["idle_notified"] == 0 == idle["received"],
        "each notice received once": in_process_received == first["received"] == noticed,
        "`certman serve --once` exited 0": first["code"] == idle["code"] == 0,
        "peak RSS within the goal": max(r["max_rss_mib"], first["max_rss_mib"], idle["max_rss_mib"])
        <= GOAL_MIB,
    }
    for what, ok in checks.items():
        if not ok:
            print(f"missed: {what}", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
