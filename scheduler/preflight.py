"""Preflight every [service] preflight_interval: "can we still renew?", alerting when not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from certman.scheduler.events import KIND, PREFLIGHT_FAILED, event
from certman.scheduler.metrics import Metrics
from certman.scheduler.notify import Notifier

from certman.service.checks import CheckReport, run_preflight
from certman.service.runtime import Runtime

log = logging.getLogger("certman.serve")


@dataclass
class Preflight:
    """Runs the checks `certman doctor` shows (issuers' own preflight, CA keys and
    lifetimes, the KMS key, certificate facts, sealed keys) and alerts on each failing one,
    once a day while it fails, long before a renewal would fail on it."""

    rt: Runtime
    notifier: Notifier
    metrics: Metrics | None = None

    def run(self) -> CheckReport:
        # The service renews by the inventory's facts: drifted ones are re-derived here.
        report = run_preflight(self.rt, restore=True)
        now = self.rt.clock.now()
        areas: dict[str, bool] = {}
        recorded: list[int] = []
        for check in report.checks:
            areas[check.area] = areas.get(check.area, True) and check.ok
            if check.ok:
                continue
            log.warning("preflight %s: %s", check.area, check.message)
            payload = event(
                PREFLIGHT_FAILED,
                time=now,
                resources=[f"certman:{check.area.replace(' ', '/')}"],
                region=str(self.rt.config.get("aws", "region")),
                detail={"Check": check.area, "Message": check.message},
            )
            key = f"{now.date().isoformat()}:{check.message[:200]}"
            notice = self.notifier.record(check.area, KIND[PREFLIGHT_FAILED], key, payload)
            if notice is not None:
                recorded.append(notice)
        if recorded:  # at once, not at the next tick: this is the early warning
            self.notifier.drain(only=recorded)
        if self.metrics is not None:
            for area, ok in areas.items():
                self.metrics.preflight_ok.labels(area=area).set(1 if ok else 0)
        return report
