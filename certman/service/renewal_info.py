"""ARI in the lifecycle (RFC 9773): renew inside the CA's window, re-asked on its schedule.

The CA may move a certificate's suggested window at any time, earlier above all (a mass
revocation ahead). So the window is not read once: each certificate keeps the time to ask
again (``ari_next_fetch_at``, the answer's Retry-After), and every reconcile tick and
every `certman renew --due` asks again for those whose time has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import update
from sqlmodel import col, select

from certman.contracts import supports
from certman.contracts.issuer import RenewalInfoRequest, SupportsRenewalInfo
from certman.errors import CertmanError
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus
from certman.service.renewal import pick_renewal_time
from certman.service.runtime import Runtime

log = logging.getLogger("certman.renewal")

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]
# A fetch is claimed by moving the next fetch time this far ahead first: another instance
# does not ask the same question meanwhile, and a crash in between retries after it.
FETCH_CLAIM = timedelta(minutes=10)
# When the issuer cannot even be built (an [issuers.NAME] table removed, say).
UNAVAILABLE_RETRY = timedelta(hours=1)
# At most this many windows are asked per service tick, the longest-waiting first: the
# tick's renewals come after them, and migration 0007 made every ACME certificate due at
# once. ARI is advisory, so the rest wait for the next ticks (at the default 60 s interval,
# 30,000 an hour, several times what a 6-hour Retry-After asks of 100,000 certificates).
ARI_PER_TICK = 500


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When to renew and when to ask the CA again (None: do not ask, no ARI)."""

    renewal_due_at: datetime | None
    ari_next_fetch_at: datetime | None


def follow_window(
    rt: Runtime,
    *,
    issuer_name: str,
    rev: Revision,
    renewal_due_at: datetime | None,
    now: datetime,
    fresh: bool,
) -> Schedule:
    """Ask the issuer for the window of ``rev`` and say when to renew and ask again.

    ``fresh`` (a revision just activated): pick a random point in the window. Otherwise
    keep ``renewal_due_at`` while it stays inside the window, so that asking again does not
    move a settled time around, and pick anew once the window moved past it - earlier (the
    CA wants the certificate replaced soon) or later. Without ARI, or when the answer
    fails, ``renewal_due_at`` stands (section 4.3.3: ARI is advisory).
    """
    try:
        issuer = rt.issuer(issuer_name)
        if not supports(issuer, SupportsRenewalInfo) or not rev.certificate_pem:
            return Schedule(renewal_due_at=renewal_due_at, ari_next_fetch_at=None)
        window = cast(SupportsRenewalInfo, issuer).renewal_info(
            RenewalInfoRequest(
                certificate_pem=rev.certificate_pem.encode(),
                issuer_pem=(rev.chain_pem or "").encode(),
                now=now,
            )
        )
    except CertmanError as error:
        retry = error.retry_after if error.retry_after and error.retry_after > now else None
        log.warning("renewal window of %s not updated: %s", rev.serial, error.message)
        return Schedule(
            renewal_due_at=renewal_due_at, ari_next_fetch_at=retry or now + UNAVAILABLE_RETRY
        )
    if window is None:
        return Schedule(renewal_due_at=renewal_due_at, ari_next_fetch_at=None)
    due = renewal_due_at
    if fresh or due is None or not window.window_start <= due <= window.window_end:
        due = pick_renewal_time(window.window_start, window.window_end)
        if renewal_due_at is not None and due < renewal_due_at and not fresh:
            log.warning(
                "the CA moved the renewal window of serial %s earlier: renewal now due %s%s",
                rev.serial,
                due.isoformat(),
                f" ({window.explanation_url})" if window.explanation_url else "",
            )
    return Schedule(renewal_due_at=due, ari_next_fetch_at=window.retry_after)


def refresh_renewal_windows(
    rt: Runtime,
    *,
    batch: int = 200,
    limit: int | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Ask again for active certificates whose next ARI fetch time has passed.

    The longest-waiting first, ``batch`` at a time, at most ``limit`` of them (None: every
    one); ``stopping`` is asked before each question, and what was claimed but not asked
    is due again at once. Returns how many schedules were updated. Never raises for one
    certificate: ARI is advisory, and one failing answer must not stop the renewals that
    follow.
    """
    updated = asked = 0
    seen: set[int] = set()
    while not stopping() and (limit is None or asked < limit):
        now = rt.clock.now()
        size = batch if limit is None else min(batch, limit - asked)
        # `seen`: an answer whose Retry-After is already past is not asked twice in a call.
        claimed = [c for c in _claim(rt, now, size) if c.id not in seen]
        if not claimed:
            return updated
        seen.update(c.id for c in claimed)
        asked += len(claimed)
        updated += _ask(rt, claimed, now, stopping)
    return updated


@dataclass(frozen=True, kw_only=True)
class _Claimed:
    id: int
    serial: str | None
    issuer: str
    renewal_due_at: datetime | None


def _claim(rt: Runtime, now: datetime, size: int) -> list[_Claimed]:
    """Claim up to ``size`` due fetches with one compare-and-set UPDATE (of several
    instances, one asks each), moving their next fetch FETCH_CLAIM ahead."""
    due = (
        select(TABLE.c.id)
        .where(TABLE.c.status == CertificateStatus.ACTIVE)
        .where(TABLE.c.ari_next_fetch_at <= now)
        .order_by(TABLE.c.ari_next_fetch_at)
        .limit(size)
    )
    with rt.session() as session:
        ids = list(session.execute(due).scalars())
        if not ids:
            return []
        rows = session.execute(
            update(TABLE)
            .where(TABLE.c.id.in_(ids))
            .where(TABLE.c.status == CertificateStatus.ACTIVE)
            .where(TABLE.c.ari_next_fetch_at <= now)
            .values(ari_next_fetch_at=now + FETCH_CLAIM)
            .returning(TABLE.c.id, TABLE.c.serial, TABLE.c.issuer, TABLE.c.renewal_due_at)
        ).all()
        session.commit()
    order = {cert_id: number for number, cert_id in enumerate(ids)}  # longest-waiting first
    return [
        _Claimed(id=r.id, serial=r.serial, issuer=r.issuer, renewal_due_at=r.renewal_due_at)
        for r in sorted(rows, key=lambda r: order[r.id])
    ]


def _ask(rt: Runtime, claimed: list[_Claimed], now: datetime, stopping: Callable[[], bool]) -> int:
    """Ask the issuers about one claimed batch, then record every answer in one commit."""
    ids = [c.id for c in claimed]
    with rt.session() as session:
        revisions = {
            rev.certificate_id: rev
            for rev in session.exec(
                select(Revision)
                .join(
                    ManagedCertificate,
                    (col(ManagedCertificate.id) == col(Revision.certificate_id))
                    & (col(ManagedCertificate.current_revision) == col(Revision.number)),
                )
                .where(col(ManagedCertificate.id).in_(ids))
            ).all()
        }
    answers: list[tuple[_Claimed, Schedule]] = []
    unasked: list[int] = []
    for number, cert in enumerate(claimed):
        if stopping():
            unasked = [c.id for c in claimed[number:]]
            break
        rev = revisions.get(cert.id)
        if rev is None:
            continue
        try:
            schedule = follow_window(
                rt,
                issuer_name=cert.issuer,
                rev=rev,
                renewal_due_at=cert.renewal_due_at,
                now=now,
                fresh=False,
            )
        except Exception:  # a bug: logged, the others are still asked
            log.exception("asking again for the renewal window of certificate %s", cert.id)
            continue
        answers.append((cert, schedule))
    updated = 0
    try:
        with rt.session() as session:
            for cert, schedule in answers:
                # Only for the certificate the window was asked about: a renewal that
                # activated meanwhile has set its own schedule.
                result = session.execute(
                    update(TABLE)
                    .where(TABLE.c.id == cert.id)
                    .where(TABLE.c.serial == cert.serial)
                    .where(TABLE.c.status == CertificateStatus.ACTIVE)
                    .values(
                        renewal_due_at=schedule.renewal_due_at,
                        ari_next_fetch_at=schedule.ari_next_fetch_at,
                    )
                )
                updated += result.rowcount  # type: ignore[attr-defined]
            if unasked:  # the service is stopping: due again at once, for the next run
                session.execute(
                    update(TABLE)
                    .where(TABLE.c.id.in_(unasked))
                    .where(TABLE.c.ari_next_fetch_at == now + FETCH_CLAIM)
                    .values(ari_next_fetch_at=now)
                )
            session.commit()
    except Exception:  # a lost database: logged; the claims run out after FETCH_CLAIM
        log.exception("recording %d renewal windows", len(answers))
        return 0
    return updated
