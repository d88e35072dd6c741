"""Issuance and renewal: create revisions and walk them to active, one committed step at a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from certman.durations import format_duration
from certman.errors import AlreadyExistsError, CertmanError, IssuanceError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus, RevisionState, transition
from certman.models import KeyType
from certman.names import check_name
from certman.service import due as due_queries
from certman.service import steps
from certman.service.certificates import find_certificate, get_certificate, revision_of
from certman.service.deletion import refuse_archived_names
from certman.service.facts import checked_renewal_due
from certman.service.failures import record_failure
from certman.service.leases import (
    Lease,
    LeaseKeeper,
    busy,
    claim,
    fence,
    holder_of,
    lease_for,
    release,
)
from certman.service.prechecks import check_master_key, issuer_precheck
from certman.service.runtime import Runtime

S = RevisionState
MAX_CERTIFICATE_NAME = 128
# A private CA backdates notBefore by an hour (ca.hierarchy.BACKDATE) for clock skew; a
# validity under an hour past issuance is a certificate that lapses before it is in use.
MIN_VALIDITY = timedelta(hours=1)

StepObserver = Callable[[str, int, RevisionState], None]
# How often a long-lived Lifecycle looks for drifted facts before the due query (due_pages).
FACTS_EVERY = timedelta(minutes=10)


@dataclass(frozen=True, kw_only=True)
class IssueSpec:
    """What an operator asks for with `certman issue`."""

    name: str
    domains: tuple[str, ...]
    issuer: str
    key_type: KeyType
    validity: timedelta
    renew_before: timedelta | None = None
    reuse_key: bool = False
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Outcome:
    name: str
    revision: int
    state: RevisionState
    message: str = ""
    notes: tuple[str, ...] = ()  # what the steps want the operator to know


@dataclass
class Lifecycle:
    """Walks revisions, each under a lease on its certificate (certman.service.leases):
    a step is committed only while this process holds the lease, so the service and an
    operator never both advance one revision."""

    runtime: Runtime
    # Called after every committed step (progress bars; crash tests kill the process here).
    observers: list[StepObserver] = field(default_factory=list)
    # Who this lifecycle leases certificates as; by default a holder of its own.
    lease: Lease | None = None
    _depth: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _keeper: LeaseKeeper | None = field(default=None, init=False, repr=False)
    # When due_pages last looked for rows that drifted from their certificates.
    _facts_checked_at: datetime | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.lease is None:
            self.lease = lease_for(self.runtime)

    @property
    def holder(self) -> Lease:
        assert self.lease is not None
        return self.lease

    # --- leases -------------------------------------------------------------------------

    @contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Hold the lease on ``name`` for the block (re-entrant); CertificateBusy when
        another process holds it. A name not in the inventory yet is leased by ``plan``
        as it creates the row, in the same commit."""
        depth = self._depth.get(name, 0)
        taken = depth == 0 and not claim(self.runtime, name, self.holder)
        if taken and holder_of(self.runtime, name) is not None:
            raise busy(self.runtime, name)
        self._depth[name] = depth + 1
        if self._keeper is None:
            self._keeper = LeaseKeeper(self.runtime, self.holder).__enter__()
        try:
            yield
        finally:
            self._depth[name] -= 1
            if not self._depth[name]:
                del self._depth[name]
                try:
                    release(self.runtime, name, self.holder)
                finally:
                    if not self._depth and self._keeper is not None:
                        keeper, self._keeper = self._keeper, None
                        keeper.__exit__()

    def _fence(self, session: Session, cert: ManagedCertificate) -> None:
        """In a step's transaction: this process still holds the lease, or LeaseLost."""
        assert cert.id is not None
        fence(session, [cert.id], self.holder, self.runtime.clock.now())

    def issue(self, spec: IssueSpec) -> tuple[Outcome, bool]:
        """Plan and walk a new certificate under one lease (`certman issue`); whether a new
        revision was planned (False: an unfinished issuance was resumed)."""
        with self.holding(spec.name):
            _, planned = self.plan(spec)
            return self.advance(spec.name), planned

    # --- planning -----------------------------------------------------------------------

    def validate(self, spec: IssueSpec) -> IssueSpec:
        """Check everything an issuance needs before anything is written; return it normalised."""
        from certman.domains import normalize_names

        check_name(spec.name, "Certificate", max_length=MAX_CERTIFICATE_NAME)
        identifiers = tuple(i.value for i in normalize_names(list(spec.domains)))
        if spec.validity <= timedelta(0):
            raise ValidationError("--validity must be longer than zero.")
        if spec.validity < MIN_VALIDITY:
            raise ValidationError(
                f"--validity {format_duration(spec.validity)} is shorter than the minimum of "
                f"{format_duration(MIN_VALIDITY)}; the certificate would expire before it could "
                "be deployed and renewed."
            )
        if spec.renew_before is not None and spec.renew_before <= timedelta(0):
            raise ValidationError("--renew-before must be longer than zero.")
        if spec.renew_before is not None and spec.renew_before >= spec.validity:
            raise ValidationError(
                f"--renew-before ({format_duration(spec.renew_before)}) must be shorter than "
                f"--validity ({format_duration(spec.validity)}), or the certificate would renew "
                "continuously."
            )
        if spec.targets:
            from certman.deploy.rollout import precheck_targets

            # An unknown target is refused here.
            deployers = {t: self.runtime.deployer(t) for t in spec.targets}
            precheck_targets(deployers, None)
        issuer_precheck(self.runtime, spec.issuer, identifiers, spec.key_type, spec.validity)
        _ = self.runtime.key_wrapper  # a missing master key is refused before anything is planned
        _ = self.runtime.archive  # so is a malformed [archive], found only after issuance else
        return IssueSpec(
            name=spec.name,
            domains=identifiers,
            issuer=spec.issuer,
            key_type=spec.key_type,
            validity=spec.validity,
            renew_before=spec.renew_before,
            reuse_key=spec.reuse_key,
            targets=tuple(dict.fromkeys(spec.targets)),
        )

    def plan(self, spec: IssueSpec) -> tuple[ManagedCertificate, bool]:
        """Record the certificate and its first revision (planned); resume an unfinished one.

        A new name is refused while the archive still holds the bundles of a deleted
        certificate of that name (revision 1 would overwrite them). Returns the certificate
        and whether a new revision was planned.
        """
        spec = self.validate(spec)
        with self.holding(spec.name):
            return self._plan(spec)

    def _plan(self, spec: IssueSpec) -> tuple[ManagedCertificate, bool]:
        now = self.runtime.clock.now()
        with self.runtime.session() as session:
            cert = find_certificate(session, spec.name)
            if cert is None:
                refuse_archived_names(self.runtime, [spec.name])
            else:
                latest = revision_of(session, cert, cert.latest_revision)
                unfinished = latest is not None and S(latest.state).in_flight
                if unfinished and json.loads(cert.domains) == list(spec.domains):
                    return cert, False
                if cert.current_revision or unfinished:
                    raise AlreadyExistsError(
                        f"Certificate {spec.name!r} already exists; use `certman renew "
                        f"{spec.name}` to renew it, or pick another name."
                    )
            new = cert is None
            if cert is None:
                # Leased in the commit that creates it: no other process can take it between.
                cert = ManagedCertificate(
                    name=spec.name,
                    created_at=now,
                    claimed_by=self.holder.holder,
                    claimed_until=now + self.holder.duration,
                )
            # New, or its first issuance failed: start over with what was asked now.
            apply_spec(cert, spec)
            cert.updated_at = now
            session.add(cert)
            session.flush()
            rev = self._new_revision(session, cert, reason="issue", now=now)
            if not new:
                self._fence(session, cert)
            session.commit()
        self._notify(spec.name, rev.number, S.PLANNED)
        return cert, True

    def _new_revision(
        self, session: Session, cert: ManagedCertificate, *, reason: str, now: datetime
    ) -> Revision:
        assert cert.id is not None
        cert.latest_revision += 1
        rev = Revision(
            certificate_id=cert.id,
            number=cert.latest_revision,
            state=S.PLANNED,
            reason=reason,
            key_type=cert.key_type,
            created_at=now,
            updated_at=now,
        )
        session.add(cert)
        session.add(rev)
        return rev

    # --- walking ------------------------------------------------------------------------

    def advance(self, name: str) -> Outcome:
        """Walk the certificate's unfinished revision to active; resumable after any crash."""
        with self.holding(name):
            with self.runtime.session() as session:
                cert = get_certificate(session, name)
            check_master_key(self.runtime, cert)
            return self._walk(name)

    def _walk(self, name: str) -> Outcome:
        """advance, once the master key was checked."""
        notes: list[str] = []
        while True:
            with self.runtime.session() as session:
                cert = get_certificate(session, name)
                rev = revision_of(session, cert, cert.latest_revision)
                if rev is None or not S(rev.state).in_flight:
                    state = S(rev.state) if rev else S.PLANNED
                    return Outcome(
                        name=name, revision=cert.latest_revision, state=state, notes=tuple(notes)
                    )
                work = steps.Work(
                    cert=cert,
                    rev=rev,
                    previous=revision_of(session, cert, cert.current_revision),
                )
                if rev.state == S.PLANNED and cert.reuse_key:
                    from certman.service.revocation import compromised_public_keys

                    work.compromised_keys = compromised_public_keys(session, cert)
                work.checkpoint = self._committer(session, work)
                state = S(rev.state)
                try:
                    self._run_step(work, state)
                except CertmanError as error:
                    session.rollback()
                    self.record_failure(name, rev.number, error)
                    raise
                now = self.runtime.clock.now()
                rev.updated_at = now
                cert.updated_at = now
                session.add_all([cert, rev] + ([work.previous] if work.previous else []))
                if rev.state == S.ACTIVE:
                    _audit_activation(session, now, cert, rev)
                self._fence(session, cert)
                session.commit()
                notes += work.notes
            self._notify(name, rev.number, S(rev.state))

    def _run_step(self, work: steps.Work, state: RevisionState) -> None:
        step = steps.NEXT_STEP[state]
        if step is steps.issue:
            _refuse_before_retry_after(work, self.runtime.clock.now())
            steps.issue(self.runtime, work, self._order_checkpoint(work.cert.name, work.rev.number))
        else:
            step(self.runtime, work)

    def _order_checkpoint(self, name: str, number: int) -> Callable[[str], None]:
        """Persist an ACME order URL the moment it exists (DESIGN.md rule 2)."""

        def checkpoint(order_url: str) -> None:
            with self.runtime.session() as session:
                cert = get_certificate(session, name)
                rev = revision_of(session, cert, number)
                assert rev is not None
                if rev.order_url == order_url and rev.state == S.ORDERED:
                    return
                rev.order_url = order_url
                transition(rev, S.ORDERED, self.runtime.clock.now(), name=name)
                session.add(rev)
                self._fence(session, cert)
                session.commit()
            self._notify(name, number, S.ORDERED)

        return checkpoint

    def _committer(self, session: Session, work: steps.Work) -> Callable[[], None]:
        def commit() -> None:
            session.add_all([work.cert, work.rev])
            self._fence(session, work.cert)
            session.commit()

        return commit

    def _notify(self, name: str, number: int, state: RevisionState) -> None:
        for observer in self.observers:
            observer(name, number, state)

    def record_failure(self, name: str, number: int, error: CertmanError) -> None:
        """Retryable: back off and keep the revision where it is. Permanent: mark it failed."""
        record_failure(self.runtime, name, number, error)

    # --- renewal ------------------------------------------------------------------------

    def renew(self, name: str, *, force: bool = False) -> Outcome:
        """Finish an unfinished revision, or start a new one when due (or forced).

        Under the certificate's lease: CertificateBusy when another process holds it. Not
        due any more (another process renewed it meanwhile): the outcome's ``message``
        says until when, and nothing was done.
        """
        with self.holding(name):
            return self._renew(name, force=force)

    def _renew(self, name: str, *, force: bool) -> Outcome:
        now = self.runtime.clock.now()
        with self.runtime.session() as session:
            cert = get_certificate(session, name)
            if cert.source != "managed":
                raise ValidationError(
                    f"Certificate {name!r} is not managed by certman (source {cert.source}); "
                    "it cannot be renewed here."
                )
            latest = revision_of(session, cert, cert.latest_revision)
            unfinished = latest is not None and S(latest.state).in_flight
            due = checked_renewal_due(self.runtime, session, cert)  # not the row alone
            if (
                not unfinished
                and not force
                and cert.status == CertificateStatus.ACTIVE
                and due
                and due > now
            ):
                return Outcome(
                    name=name,
                    revision=cert.current_revision,
                    state=S.ACTIVE,
                    message=(
                        f"not due until {due.isoformat().replace('+00:00', 'Z')}; "
                        "use --force to renew now"
                    ),
                )
            check_master_key(self.runtime, cert)  # once per renewal: _walk does not again
            if not unfinished:
                try:  # what `certman issue` refuses is refused before a renewal is planned too
                    issuer_precheck(
                        self.runtime,
                        cert.issuer,
                        tuple(json.loads(cert.domains)),
                        KeyType(cert.key_type),
                        timedelta(seconds=cert.validity_seconds),
                    )
                except CertmanError as error:
                    session.rollback()
                    self.record_failure(name, 0, error)  # no revision: the active one stands
                    raise
                reason = "force" if force else "renew"
                planned = self._new_revision(session, cert, reason=reason, now=now)
                cert.updated_at = now
                self._fence(session, cert)
                session.commit()
                self._notify(name, planned.number, S.PLANNED)
        return self._walk(name)

    # --- what to renew ------------------------------------------------------------------

    def due(self, *, limit: int = 500) -> list[str]:
        """Names whose renewal is due now (and whose back-off has passed), soonest first."""
        with self.runtime.session() as session:
            return due_queries.due_names(session, self.runtime.clock.now(), limit=limit)

    def unfinished(self) -> list[str]:
        """Names with a revision in flight (a crash or a retryable failure left it there)."""
        with self.runtime.session() as session:
            return due_queries.unfinished_names(session, self.runtime.clock.now())

    def due_pages(self, *, page_size: int = 500) -> Iterator[list[str]]:
        """Unfinished, then due certificates, a page at a time, each once (service.due).

        First, those whose inventory row drifted from their certificate, due by the
        certificate's own validity (service.facts): the due query trusts the row. That
        query joins every row (~0.1 s at 100,000), so a long-lived Lifecycle (the service's
        reconciler) runs it at most every FACTS_EVERY; each `renew --due` runs it.
        """
        from certman.service.facts import due_by_their_certificates

        now = self.runtime.clock.now()
        last = self._facts_checked_at
        drifted: list[str] = []
        if last is None or now - last >= FACTS_EVERY:
            drifted = due_by_their_certificates(self.runtime)
            self._facts_checked_at = now
        if drifted:
            yield drifted
        offered = set(drifted)
        for page in due_queries.due_pages(self.runtime, page_size=page_size):
            rest = [name for name in page if name not in offered]
            if rest:
                yield rest


def _refuse_before_retry_after(work: steps.Work, now: datetime) -> None:
    """No new order before the Retry-After the issuer's last answer left on this revision.

    record_failure stored it from the failed issue (for ACME, a rateLimited answer's
    Retry-After, RFC 8555 section 6.6). Refused here rather than in an issuer, it holds for
    every issuer and every path: the service, `renew NAME`, `issue` again.
    """
    until = work.rev.retry_after
    if until is not None and until > now:
        raise IssuanceError(
            f"Issuer {work.cert.issuer!r} asked certman to wait until {until.isoformat()} "
            f"before ordering {', '.join(json.loads(work.cert.domains))} again; certman will "
            "try again then.",
            retryable=True,
            retry_after=until,
        )


def apply_spec(cert: ManagedCertificate, spec: IssueSpec) -> None:
    cert.source = "managed"
    cert.issuer = spec.issuer
    cert.domains = json.dumps(list(spec.domains))
    cert.key_type = spec.key_type.value
    cert.validity_seconds = int(spec.validity.total_seconds())
    cert.renew_before_seconds = (
        int(spec.renew_before.total_seconds()) if spec.renew_before else None
    )
    cert.reuse_key = spec.reuse_key
    cert.targets = json.dumps(list(spec.targets)) if spec.targets else "[]"
    cert.status = CertificateStatus.PENDING if not cert.current_revision else cert.status


def _audit_activation(
    session: Session, now: datetime, cert: ManagedCertificate, rev: Revision
) -> None:
    action = "certificate.issue" if rev.number == 1 else "certificate.renew"
    append_event(
        session,
        now,
        action,
        cert.name,
        revision=rev.number,
        serial=rev.serial,
        issuer=cert.issuer,
        fingerprint_sha256=rev.fingerprint_sha256,
        not_after=rev.not_after.isoformat() if rev.not_after else None,
    )
