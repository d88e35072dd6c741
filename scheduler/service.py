"""`certman serve`: APScheduler ticks the reconcile loop and the preflight; signals stop it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from certman.scheduler.health import HealthServer
from certman.scheduler.instance_lock import ServiceLock
from certman.scheduler.metrics import Metrics
from certman.scheduler.notify import Notifier
from certman.scheduler.preflight import Preflight
from certman.scheduler.reconcile import Reconciler, TickHooks, TickReport
from sqlalchemy.exc import OperationalError

from certman.errors import CertmanError, one_line
from certman.service.leases import instance_id, release_all
from certman.service.runtime import Runtime

log = logging.getLogger("certman.serve")


class Service:
    """One running service instance; the inventory holds all state, this holds none.

    APScheduler runs three interval jobs in a small thread pool: the reconcile tick
    (``[service] interval`` plus up to ``jitter``), the preflight (``preflight_interval``)
    and, on SQLite, the heartbeat of the single-service lock. There are no per-certificate
    jobs: what is due is always read from the inventory.
    """

    def __init__(self, rt: Runtime, holder: str | None = None, *, debug: bool = False) -> None:
        cfg = rt.config
        self.rt = rt
        self.debug = debug  # tracebacks in the log for certman's own errors too
        self.holder = holder or instance_id()
        self.stopping = threading.Event()
        self.interval = cfg.duration("service", "interval") or timedelta(seconds=60)
        self.jitter = cfg.duration("service", "jitter") or timedelta(0)
        self.preflight_every = cfg.duration("service", "preflight_interval") or timedelta(hours=24)
        self.alive_at: float | None = None
        self.metrics = Metrics()
        self.metrics.watch(rt)
        self.notifier = Notifier.from_config(rt)
        self.reconciler = Reconciler(
            rt,
            holder=self.holder,
            notifier=self.notifier,
            lease=cfg.duration("service", "lease") or timedelta(minutes=10),
            stopping=self.stopping,
            hooks=TickHooks(
                renewal=self.metrics.count_renewal,
                progress=self._alive,
                finished=self._finished,
            ),
        )
        self.preflight = Preflight(rt, self.notifier, self.metrics)
        self.lock = ServiceLock(rt, self.holder, ttl=max(3 * self.interval, timedelta(seconds=30)))

    def once(self) -> TickReport:
        """One tick, under the same single-service rule as `serve` (`certman serve --once`)."""
        self.lock.acquire()
        try:
            return self.reconciler.tick()
        finally:
            release_all(self.rt, self.holder)
            self.lock.release()

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then let the step in flight finish; exit code 0."""
        self.lock.acquire()
        try:
            health = HealthServer(
                str(self.rt.config.get("service", "listen")),
                self.metrics,
                self.interval.total_seconds(),
                lambda: self.alive_at,
                jitter=self.jitter.total_seconds(),
            )
        except BaseException:
            self.lock.release()
            raise
        scheduler = self._scheduler()
        previous = self._trap_signals()
        health.start()
        scheduler.start()
        log.info("serving on %s as %s", self.rt.config.get("service", "listen"), self.holder)
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            scheduler.shutdown(wait=True)  # the tick in flight stops after its current step
            health.stop()
            release_all(self.rt, self.holder)
            self.lock.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopped")
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def _scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = datetime.now(UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.interval.total_seconds(),
            jitter=int(self.jitter.total_seconds()) or None,
            next_run_time=now,
            id="reconcile",
        )
        scheduler.add_job(
            self._preflight,
            "interval",
            seconds=self.preflight_every.total_seconds(),
            next_run_time=now,
            id="preflight",
        )
        if self.lock.needed:
            scheduler.add_job(
                self._heartbeat,
                "interval",
                seconds=self.lock.ttl.total_seconds() / 3,
                id="heartbeat",
            )
        return scheduler

    def _trap_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # embedded (tests): the caller stops it with stop()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping after the step in flight", signum)
            self.stopping.set()

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _tick(self) -> None:
        try:
            report = self.reconciler.tick()
        except Exception as e:  # keep ticking; /healthz turns 503 if this keeps happening
            self._log_failure("reconcile tick failed", e)
            return
        if report.renewed or report.failed or report.notified:
            log.info(
                "tick: %d renewed, %d failed, %d notices sent",
                len(report.renewed),
                len(report.failed),
                report.notified,
            )

    def _preflight(self) -> None:
        try:
            self.preflight.run()
        except Exception as e:
            self._log_failure("preflight failed", e)

    def _heartbeat(self) -> None:
        try:
            self.lock.heartbeat()
        except Exception as e:
            self._log_failure("single-service lock heartbeat failed", e)

    def _log_failure(self, what: str, error: Exception) -> None:
        """certman's own errors (a lost database included) in one line; a bug with its traceback."""
        if isinstance(error, CertmanError):
            log.error("%s: %s", what, error.message, exc_info=error if self.debug else None)
        elif isinstance(error, OperationalError):
            log.error(
                "%s: the inventory database cannot be reached (%s)",
                what,
                one_line(error),
                exc_info=error if self.debug else None,
            )
        else:
            log.exception(what)

    def _alive(self) -> None:
        self.alive_at = time.time()

    def _finished(self, report: TickReport) -> None:
        if not self.stopping.is_set():
            self.alive_at = time.time()
            self.metrics.tick_finished()
