"""ARI in the lifecycle (RFC 9773): renew inside the CA's window, re-asked on its schedule.

The CA may move a certificate's suggested window at any time, earlier above all (a mass
revocation ahead). So the window is not read once: each certificate keeps the time to ask
again (``ari_next_fetch_at``, the answer's Retry-After), and every reconcile tick and
every `certman renew --due` asks again for those whose time has passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import update
from sqlmodel import col, select

from certman.errors import CertmanError
from certman.interfaces import RenewalInfoRequest, SupportsRenewalInfo, supports
from certman.inventory.tables import ManagedCertificate, Revision
from certman.service.renewal import pick_renewal_time
from certman.service.runtime import Runtime

log = logging.getLogger("certman.renewal")

TABLE = ManagedCertificate.__table__  # type: ignore[attr-defined]
# A fetch is claimed by moving the next fetch time this far ahead first: another instance
# does not ask the same question meanwhile, and a crash in between retries after it.
FETCH_CLAIM = timedelta(minutes=10)
# When the issuer cannot even be built (an [issuers.NAME] table removed, say).
UNAVAILABLE_RETRY = timedelta(hours=1)


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


def refresh_renewal_windows(rt: Runtime, *, batch: int = 200) -> int:
    """Ask again for every active certificate whose next ARI fetch time has passed.

    Returns how many schedules were updated. Never raises for one certificate: ARI is
    advisory, and one failing answer must not stop the renewals that follow.
    """
    updated = 0
    seen: set[int] = set()
    while True:
        now = rt.clock.now()
        with rt.session() as session:
            ids = list(
                session.exec(
                    select(ManagedCertificate.id)
                    .where(ManagedCertificate.status == "active")
                    .where(col(ManagedCertificate.ari_next_fetch_at) <= now)
                    .order_by(col(ManagedCertificate.ari_next_fetch_at))
                    .limit(batch)
                ).all()
            )
        todo = [i for i in ids if i is not None and i not in seen]
        if not todo:  # done; or only rows that failed before the claim (database trouble)
            return updated
        for cert_id in todo:
            seen.add(cert_id)
            try:
                updated += _refresh(rt, cert_id, now)
            except Exception:  # a bug or a lost database: logged, the tick goes on
                log.exception("asking again for the renewal window of certificate %s", cert_id)


def _refresh(rt: Runtime, cert_id: int, now: datetime) -> int:
    with rt.session() as session:
        # Claim the fetch: one compare-and-set, so of several instances one asks.
        claimed = session.execute(
            update(TABLE)
            .where(TABLE.c.id == cert_id)
            .where(TABLE.c.status == "active")
            .where(TABLE.c.ari_next_fetch_at <= now)
            .values(ari_next_fetch_at=now + FETCH_CLAIM)
        )
        session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return 0
        cert = session.get(ManagedCertificate, cert_id)
        assert cert is not None
        rev = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert_id)
            .where(Revision.number == cert.current_revision)
        ).first()
        serial, issuer_name, due = cert.serial, cert.issuer, cert.renewal_due_at
    if rev is None:
        return 0
    schedule = follow_window(
        rt, issuer_name=issuer_name, rev=rev, renewal_due_at=due, now=now, fresh=False
    )
    with rt.session() as session:
        # Only for the certificate the window was asked about: a renewal that activated
        # meanwhile has set its own schedule.
        result = session.execute(
            update(TABLE)
            .where(TABLE.c.id == cert_id)
            .where(TABLE.c.serial == serial)
            .where(TABLE.c.status == "active")
            .values(
                renewal_due_at=schedule.renewal_due_at,
                ari_next_fetch_at=schedule.ari_next_fetch_at,
            )
        )
        session.commit()
    return 1 if result.rowcount == 1 else 0  # type: ignore[attr-defined]
