"""The due-for-renewal query over 1,000,000 inventory rows (goal: under 25 ms)."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from bench.common import certificate_row, discard, fresh_runtime, remove_homes, table
from certman.inventory.tables import ManagedCertificate
from certman.service.due import due_names

BATCH = 20_000


def populate(rt: object, rows: int, due_fraction: float, now: datetime) -> None:
    rng = random.Random(7)
    cert_table = ManagedCertificate.__table__  # type: ignore[attr-defined]
    with rt.session() as session:  # type: ignore[attr-defined]
        for start in range(0, rows, BATCH):
            batch = []
            for i in range(start, min(rows, start + BATCH)):
                due = rng.random() < due_fraction
                offset = -rng.randint(60, 86400 * 10) if due else rng.randint(60, 86400 * 365)
                batch.append(
                    certificate_row(
                        i,
                        now,
                        status="active" if rng.random() < 0.97 else "revoked",
                        not_after=now + timedelta(seconds=offset + 30 * 86400),
                        renewal_due_at=now + timedelta(seconds=offset),
                    )
                )
            session.execute(insert(cert_table), batch)
        session.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--due", type=float, default=0.01, help="fraction of rows due")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    rt = fresh_runtime()
    now = datetime.now(UTC).replace(microsecond=0)
    populate(rt, args.rows, args.due, now)
    timings = []
    with rt.session() as session:
        session.exec(__import__("sqlmodel").text("ANALYZE"))  # planner statistics, as ops would
        for _ in range(args.runs):
            start = time.perf_counter()
            names = due_names(session, now, limit=500)
            timings.append(time.perf_counter() - start)
    discard(rt)
    remove_homes()
    median_ms = statistics.median(timings) * 1000
    print(f"Due-for-renewal query, {args.rows:,} rows, {args.due:.0%} due, first page of 500\n")
    print(
        table(
            ["query", "median", "p95", "rows returned"],
            [
                [
                    "status='active' AND renewal_due_at <= now AND back-off passed",
                    f"{median_ms:.1f} ms",
                    f"{sorted(timings)[int(len(timings) * 0.95) - 1] * 1000:.1f} ms",
                    str(len(names)),
                ]
            ],
        )
    )
    return 0 if median_ms < 25 else 1


if __name__ == "__main__":
    sys.exit(main())
