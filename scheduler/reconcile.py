"""One reconcile tick: renew what is due, finish what was interrupted, then notify; never stall."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certman.scheduler.events import RENEWAL_RECOVERED
from certman.scheduler.expiry import record_expiry_notices
from certman.scheduler.notify import Notifier, record_certificate_notice, record_failure_notice
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from certman.errors import CertmanError, InventoryError, OperationError, one_line
from certman.inventory.tables import ManagedCertificate
from certman.lifecycle.states import RevisionState
from certman.service.leases import CertificateBusy, Lease, LeaseLost
from certman.service.lifecycle import Lifecycle
from certman.service.renewal_info import ARI_PER_TICK, refresh_renewal_windows
from certman.service.runtime import Runtime

log = logging.getLogger("certman.serve")


class Interrupted(Exception):
    """The service is stopping: the step just committed is a safe place to stop at."""


@dataclass
class TickReport:
    at: datetime
    renewed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # held by another instance, or not due
    interrupted: list[str] = field(default_factory=list)
    notified: int = 0  # notices fully sent in this tick (any kind, recorded now or before)


@dataclass
class TickHooks:
    """What the service watches (metrics, health); the simulation passes none."""

    renewal: Callable[[str, float], None] = lambda result, seconds: None
    progress: Callable[[], None] = lambda: None
    finished: Callable[[TickReport], None] = lambda report: None


@dataclass
class Reconciler:
    """The service's work as a function of the inventory and the (injected) clock.

    It picks certificates exactly as `certman renew --due` does (``Lifecycle.due_pages``:
    unfinished ones, then the indexed due query) and renews each through ``Lifecycle.renew``,
    whose deploy step rolls the new revision out to the certificate's targets. `certman
    serve` calls ``tick`` on a schedule; `certman simulate` calls the same ``tick`` on a
    simulated clock.
    """

    rt: Runtime
    holder: str
    notifier: Notifier
    lease: timedelta = timedelta(minutes=10)
    batch: int = 500
    stopping: threading.Event = field(default_factory=threading.Event)
    hooks: TickHooks = field(default_factory=TickHooks)
    lifecycle: Lifecycle = field(init=False)
    _current: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # The back-off cap, [service] max_backoff, is read by Lifecycle.record_failure.
        self.lifecycle = Lifecycle(
            self.rt,
            observers=[self._after_step],
            lease=Lease(holder=self.holder, duration=self.lease),
        )

    def tick(self) -> TickReport:
        """One pass; an unreachable database ends it with one InventoryError, not a crash."""
        try:
            return self._tick()
        except OperationalError as e:
            raise InventoryError(
                f"The inventory database cannot be reached ({one_line(e)}); "
                "the service tries again on the next tick."
            ) from e

    def _tick(self) -> TickReport:
        report = TickReport(at=self.rt.clock.now())
        # RFC 9773: windows whose Retry-After has passed, a bounded number per tick
        refresh_renewal_windows(self.rt, limit=ARI_PER_TICK, stopping=self.stopping.is_set)
        # Pages, so a large backlog never loads every name at once; each name comes once,
        # so the pages end when only certificates held elsewhere (or failing) are left.
        for page in self.lifecycle.due_pages(page_size=self.batch):
            for name in page:
                if self.stopping.is_set():
                    break
                self._renew_one(name, report)
                self.hooks.progress()
            if self.stopping.is_set():
                break
        # Notices after every renewal: a webhook that hangs never holds one up. What this
        # tick recorded, and what earlier ticks could not deliver, goes out now.
        if not self.stopping.is_set():
            record_expiry_notices(self.rt, self.notifier, self.rt.clock.now())
            report.notified = self.notifier.drain(
                stopping=self.stopping.is_set, progress=self.hooks.progress
            )
        self.hooks.finished(report)
        return report

    def _after_step(self, name: str, _number: int, state: RevisionState) -> None:
        """After every committed step: stop here if the service stops (a lost lease stops the
        lifecycle at its next commit, LeaseLost).

        ORDERED is committed in the middle of the issue step (the order URL, DESIGN.md
        rule 2); the step is let finish rather than stopped there.
        """
        if name != self._current:
            return
        if self.stopping.is_set() and state != RevisionState.ORDERED:
            raise Interrupted(name)

    def _renew_one(self, name: str, report: TickReport) -> None:
        started = time.monotonic()
        self._current = name
        try:
            failures_before = self._certificate(name).failures
            try:
                outcome = self.lifecycle.renew(name)
            except CertificateBusy:  # another instance, or a command, holds it
                report.skipped.append(name)
                return
            if outcome.message:  # not due any more: another instance renewed it meanwhile
                report.skipped.append(name)
                return
            report.renewed.append(name)
            self.hooks.renewal("success", time.monotonic() - started)
            self._log_renewed(name, outcome.revision)
            if failures_before:
                self._notify(
                    name,
                    RENEWAL_RECOVERED,
                    f"r{outcome.revision}",
                    {"Revision": outcome.revision, "FailuresBefore": failures_before},
                )
        except (Interrupted, LeaseLost) as stop:
            report.interrupted.append(name)
            why = "the service is stopping" if isinstance(stop, Interrupted) else "lease lost"
            log.info("%s: stopped at a committed step (%s); it resumes from there", name, why)
        except CertmanError as error:
            self._failed(name, error, report, time.monotonic() - started)
        except OperationalError:
            raise  # the database is gone: nothing else in this tick can get further
        except Exception as error:  # a bug: recorded, never blocks the rest
            log.exception("%s: renewal crashed", name)
            wrapped = OperationError(f"Renewal crashed: {type(error).__name__}: {error}.")
            wrapped.retryable = True
            self._record_crash(name, wrapped)
            self._failed(name, wrapped, report, time.monotonic() - started)
        finally:
            self._current = None

    def _log_renewed(self, name: str, revision: int) -> None:
        cert = self._certificate(name)
        log.info(
            "%s: renewed, revision %d, serial %s, not after %s, next renewal due %s",
            name,
            revision,
            cert.serial,
            _iso(cert.not_after),
            _iso(cert.renewal_due_at),
        )

    def _failed(self, name: str, error: CertmanError, report: TickReport, seconds: float) -> None:
        """Lifecycle.record_failure has backed off (retryable) or marked it failed; alert."""
        report.failed[name] = error.message
        self.hooks.renewal("retryable" if error.retryable else "failed", seconds)
        cert = self._certificate(name)
        if error.retryable:
            log.warning(
                "%s: renewal failed (retryable, failure %d): %s Next attempt %s.",
                name,
                cert.failures,
                error.message,
                _iso(cert.next_attempt_at),
            )
        else:
            log.warning(
                "%s: renewal failed (permanent): %s Not retried until `certman renew %s`.",
                name,
                error.message,
                name,
            )
        record_failure_notice(self.rt, self.notifier, name, error)

    def _record_crash(self, name: str, error: CertmanError) -> None:
        try:
            cert = self._certificate(name)
            self.lifecycle.record_failure(name, cert.latest_revision, error)
        except Exception:
            log.exception("%s: could not record the failure", name)

    def _certificate(self, name: str) -> ManagedCertificate:
        with self.rt.session() as session:
            return session.exec(
                select(ManagedCertificate).where(ManagedCertificate.name == name)
            ).one()

    def _notify(self, name: str, kind: str, key: str, detail: dict[str, object]) -> None:
        record_certificate_notice(self.rt, self.notifier, name, kind, key, detail)


def _iso(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else "-"
