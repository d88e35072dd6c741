"""Prometheus metrics: service counters in a prometheus-client registry, and the
per-certificate gauges streamed from the inventory at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString
from sqlmodel import col, select

from certman.inventory.tables import ManagedCertificate
from certman.service.runtime import Runtime

PAGE = 5000
# (metric, help, column) of the per-certificate gauges, label "name"
CERTIFICATE_GAUGES = (
    (
        "certman_certificate_expiration_timestamp_seconds",
        "When the certificate's active revision expires (Unix time).",
        "not_after",
    ),
    (
        "certman_certificate_renewal_timestamp_seconds",
        "When certman will renew the certificate (Unix time).",
        "renewal_due_at",
    ),
)


class Metrics:
    """The service's own registry (not prometheus-client's global one) plus the inventory.

    The per-certificate gauges are written straight from the database, a page of rows at
    a time, in the text exposition format: a prometheus-client collector would build
    every sample as an object first (some 80 MiB at 100,000 certificates, ten times that
    at a million), so the service's memory would grow with the inventory.
    """

    def __init__(self) -> None:
        self.rt: Runtime | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.renewals = Counter(
            "certman_renewals",
            "Renewal attempts by result (success, retryable, failed).",
            ["result"],
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "certman_last_tick_timestamp_seconds",
            "When the last reconcile tick finished (Unix time); alert when it stops moving.",
            registry=self.registry,
        )
        self.issuance_seconds = Histogram(
            "certman_issuance_duration_seconds",
            "Time to renew one certificate, from claim to active.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.preflight_ok = Gauge(
            "certman_preflight_ok",
            "1 when the last preflight check of an area passed, else 0.",
            ["area"],
            registry=self.registry,
        )
        for result in ("success", "retryable", "failed"):
            self.renewals.labels(result=result)

    def watch(self, rt: Runtime) -> None:
        self.rt = rt

    def count_renewal(self, result: str, seconds: float) -> None:
        self.renewals.labels(result=result).inc()
        if result == "success":
            self.issuance_seconds.observe(seconds)

    def tick_finished(self) -> None:
        self.last_tick.set(time.time())

    def write(self, out: Callable[[bytes], Any]) -> None:
        """The whole exposition (text format 0.0.4), written in pieces to ``out``."""
        out(generate_latest(self.registry))
        if self.rt is None:
            return
        for metric, help_text, column in CERTIFICATE_GAUGES:
            out(f"# HELP {metric} {help_text}\n# TYPE {metric} gauge\n".encode())
            for page in _pages(self.rt, column):
                out(
                    "".join(
                        f'{metric}{{name="{_escape(name)}"}} {floatToGoString(when.timestamp())}\n'
                        for name, when in page
                    ).encode()
                )


def _pages(rt: Runtime, column: str) -> Iterator[list[tuple[str, datetime]]]:
    """(name, time) of every certificate with ``column`` set, by id, PAGE rows at a time."""
    c = ManagedCertificate
    value = getattr(c, column)
    last = 0
    while True:
        with rt.session() as session:
            rows = session.exec(
                select(c.id, c.name, value)
                .where(col(c.id) > last)
                .where(col(value).is_not(None))
                .order_by(col(c.id))
                .limit(PAGE)
            ).all()
        if not rows:
            return
        last = int(rows[-1][0] or 0)
        yield [(name, when) for _, name, when in rows]


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
