"""A failed lifecycle step, recorded: retryable ones back off, permanent ones mark it failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from certman.errors import CertmanError
from certman.inventory.audit import append_event
from certman.lifecycle.states import CertificateStatus, RevisionState, transition
from certman.service.certificates import get_certificate, revision_of
from certman.service.renewal import BACKOFF_MAX, lifetime_of, next_attempt_at

if TYPE_CHECKING:
    from certman.service.runtime import Runtime


def record_failure(runtime: Runtime, name: str, number: int, error: CertmanError) -> None:
    """Retryable: back off and keep the revision where it is. Permanent: mark it failed.

    ``number`` 0 (refused before a revision was planned) backs off like a retryable
    failure: the active revision stands, and the next attempt asks again.
    """
    now = runtime.clock.now()
    with runtime.session() as session:
        cert = get_certificate(session, name)
        rev = revision_of(session, cert, number)
        cert.failures += 1
        cert.last_error = error.message
        if rev is not None:
            rev.error = error.message
            rev.retry_after = error.retry_after
        if error.retryable or rev is None:
            cert.next_attempt_at = next_attempt_at(
                now=now,
                failures=cert.failures,
                retry_after=error.retry_after,
                cap=runtime.config.duration("service", "max_backoff") or BACKOFF_MAX,
                lifetime=lifetime_of(cert.validity_seconds, cert.not_before, cert.not_after),
                not_after=cert.not_after,
            )
        else:
            transition(rev, RevisionState.FAILED, now, name=name)
            cert.status = CertificateStatus.FAILED
            cert.next_attempt_at = None
        cert.updated_at = now
        if rev is not None:
            rev.updated_at = now
            session.add(rev)
        session.add(cert)
        append_event(
            session,
            now,
            "certificate.failed",
            name,
            revision=number,
            retryable=error.retryable,
            error=error.message,
        )
        session.commit()
