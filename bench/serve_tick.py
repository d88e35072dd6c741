"""A reconcile tick over 100,000 managed certificates with 1 % due (private CA).

The inventory: 1,000 certificates issued for real with `issue_many` (they are the 1 % due,
their renewal moved into the past), and 99,000 more cloned by SQL insert, due later.
A child process then does what `certman serve` does on a tick, with the service's own
objects (scheduler.service.Service): one tick that renews the due certificates, a second
tick with nothing due, one /metrics scrape. It reports the times and its peak RSS
(getrusage ru_maxrss). Goal: peak RSS at most 200 MiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import insert, text

from bench.common import fresh_runtime, table

GOAL_MIB = 200
BATCH = 10_000


def populate(total: int, real: int) -> Path:
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
    with rt.session() as session:
        session.execute(
            text("UPDATE certificate SET renewal_due_at = :past"),
            {"past": now - timedelta(hours=1)},
        )
        template = (
            session.execute(text("SELECT * FROM certificate WHERE name = 'real-00000'"))
            .mappings()
            .one()
        )
        for start in range(0, total - real, BATCH):
            rows = []
            for i in range(start, min(total - real, start + BATCH)):
                row = {k: v for k, v in template.items() if k != "id"}
                left = timedelta(days=31 + i % 59, seconds=i % 86400)  # 31..89 days left
                row.update(
                    name=f"clone-{i:06d}",
                    domains=f'["clone-{i}.example.com"]',
                    not_before=now + left - timedelta(days=90),
                    not_after=now + left,
                    renewal_due_at=now + left - timedelta(days=30),
                    created_at=now,
                    updated_at=now,
                )
                rows.append(row)
            session.execute(insert(cert_table), rows)
        session.commit()
        session.execute(text("ANALYZE"))
    rt.engine.dispose()
    return rt.config.home


def child(home: Path) -> None:
    """One `certman serve`-equivalent process: the Service, two ticks, one scrape."""
    from certman.config import load_config
    from certman.service.runtime import Runtime
    from scheduler.service import Service

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
        "scrape_seconds": scrape_seconds,
        "scrape_bytes": scrape,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
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
    home = populate(args.total, args.real)
    populate_seconds = time.perf_counter() - started
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    # notifications on, as in production: the expiry query runs on every tick
    (home / "certman.toml").write_text(
        f'[notify.webhook]\nurl = "http://127.0.0.1:{sink.server_address[1]}/"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.serve_tick", "--child", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    sink.shutdown()
    shutil.rmtree(home.parent, ignore_errors=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"Reconcile tick, {args.total:,} certificates, {args.real:,} due (private CA, SQLite); "
        f"inventory built in {populate_seconds:.0f} s\n"
    )
    print(
        table(
            ["measure", "value"],
            [
                ["tick renewing the due certificates", f"{r['tick_seconds']:.1f} s"],
                ["renewed / failed", f"{r['renewed']:,} / {r['failed']}"],
                ["per renewal", f"{r['tick_seconds'] / max(1, r['renewed']) * 1000:.1f} ms"],
                ["next tick, nothing due", f"{r['idle_tick_seconds'] * 1000:.0f} ms"],
                [
                    "/metrics scrape",
                    f"{r['scrape_seconds']:.2f} s, {r['scrape_bytes'] / 2**20:.1f} MiB",
                ],
                ["peak RSS of the service process", f"{r['max_rss_mib']:.0f} MiB"],
                ["goal", f"at most {GOAL_MIB} MiB"],
            ],
        )
    )
    ok = r["renewed"] == args.real and r["max_rss_mib"] <= GOAL_MIB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
