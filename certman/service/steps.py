"""The lifecycle steps of one revision; each moves it one persisted state forward.

A step mutates the rows it is given and never commits: the driver (lifecycle.py, or
bulk.py for many revisions at once) commits after each step, so every step's result
is persisted before the next step starts (DESIGN.md, "The lifecycle").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from certman.archive.bundle import seal_bundle
from certman.contracts import supports
from certman.contracts.archive import ArchivePutRequest, ArchiveRef
from certman.contracts.deployer import Material
from certman.contracts.issuer import (
    IssuePlanRequest,
    IssueRequest,
    KeyIssueRequest,
    SupportsIssuePlan,
    SupportsKeyIssue,
)
from certman.deploy.records import dump_records, load_records
from certman.deploy.rollout import Rollout, RolloutRecord, roll_out
from certman.errors import IssuanceError
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import CertificateStatus, RevisionState, transition
from certman.models import EncryptionContext, KeyType, WrappedKey
from certman.pki import (
    PrivateKey,
    build_csr,
    certificate_facts,
    generate_private_key,
    load_private_key_der,
    private_key_pem,
    private_key_to_der,
    public_key_der,
)
from certman.service.renewal import renewal_due_at
from certman.service.renewal_info import follow_window
from certman.service.runtime import Runtime

S = RevisionState


def key_context(name: str, revision: int) -> EncryptionContext:
    return EncryptionContext(certificate=name, revision=revision, purpose="private-key")


@dataclass
class Work:
    """One revision being walked, with the rows it changes."""

    cert: ManagedCertificate
    rev: Revision
    previous: Revision | None = None  # the active revision this one replaces
    # Commits the rows as they are now, for steps with several durable sub-steps (rollouts).
    checkpoint: Callable[[], None] | None = None
    # The unsealed key, kept in memory between steps run in one process (the bulk path).
    key: PrivateKey | None = field(default=None, repr=False)
    # rev.sealed_key as sealed in this process, so the archive step need not parse it back.
    sealed: WrappedKey | None = field(default=None, repr=False)
    # Public keys (SPKI DER) of this certificate revoked for keyCompromise: never reused.
    compromised_keys: frozenset[bytes] = frozenset()
    # What the operator should be told about this step (printed by the CLI).
    notes: list[str] = field(default_factory=list)


def seal_key(rt: Runtime, work: Work) -> None:
    """PLANNED -> KEY_SEALED: a fresh key (or the previous one, re-sealed) committed first."""
    cert, rev = work.cert, work.rev
    if rev.sealed_key is None:
        context = key_context(cert.name, rev.number)
        previous = work.previous
        if _may_reuse_key(work) and previous is not None and previous.sealed_key:
            der = rt.key_wrapper.unwrap(
                WrappedKey.from_json(previous.sealed_key), key_context(cert.name, previous.number)
            )
        else:
            work.key = generate_private_key(KeyType(rev.key_type))
            der = private_key_to_der(work.key)
        work.sealed = rt.key_wrapper.wrap(der, context)
        rev.sealed_key = work.sealed.to_json()
        del der
    issuer = rt.issuer(cert.issuer)
    if rev.serial is None and supports(issuer, SupportsIssuePlan):
        # Chosen once and committed with the key: every attempt signs this very certificate.
        plan = cast(SupportsIssuePlan, issuer).plan_issue(
            IssuePlanRequest(validity=timedelta(seconds=cert.validity_seconds), now=rt.clock.now())
        )
        rev.serial = format(plan.serial, "x")
        rev.not_before, rev.not_after = plan.not_before, plan.not_after
    transition(rev, S.KEY_SEALED, rt.clock.now(), name=cert.name)


def _may_reuse_key(work: Work) -> bool:
    """reuse_key holds unless the previous key was revoked for keyCompromise (then: say so)."""
    previous = work.previous
    if not work.cert.reuse_key or previous is None or not previous.certificate_pem:
        return False
    if not work.compromised_keys:
        return True
    key = certificate_facts(previous.certificate_pem.encode()).public_key_der
    if key not in work.compromised_keys:
        return True
    work.notes.append(
        f"{work.cert.name}: a new key was generated instead of reusing the previous one, "
        "which was revoked for keyCompromise."
    )
    return False


def unseal_private_key(rt: Runtime, name: str, rev: Revision) -> bytes:
    """The revision's private key as PKCS#8 DER, in memory only."""
    assert rev.sealed_key is not None
    return rt.key_wrapper.unwrap(
        WrappedKey.from_json(rev.sealed_key), key_context(name, rev.number)
    )


def _replacing(work: Work) -> bytes | None:
    """The certificate of the active revision this issuance replaces, if any."""
    previous = work.previous
    if previous is None or not previous.certificate_pem:
        return None
    return previous.certificate_pem.encode()


def issue(rt: Runtime, work: Work, checkpoint: Callable[[str], None] | None = None) -> None:
    """KEY_SEALED/ORDERED -> ISSUED: CSR out, certificate in, checked against our key."""
    cert, rev = work.cert, work.rev
    key = work.key or load_private_key_der(unseal_private_key(rt, cert.name, rev))
    public_key = key.public_key()
    key_der = public_key_der(public_key)
    identifiers = tuple(json.loads(cert.domains))
    issuer = rt.issuer(cert.issuer)
    validity = timedelta(seconds=cert.validity_seconds)
    # The plan seal_key committed (issuers that plan); revisions sealed before plans have none.
    planned = rev.serial if rev.serial is not None and rev.not_before is not None else None
    serial = int(planned, 16) if planned else None
    not_before = rev.not_before if planned else None
    if supports(issuer, SupportsKeyIssue):
        response = cast(SupportsKeyIssue, issuer).issue_for_key(
            KeyIssueRequest(
                name=cert.name,
                revision=rev.number,
                identifiers=identifiers,
                public_key_der=key_der,
                key_type=KeyType(rev.key_type),
                validity=validity,
                now=rt.clock.now(),
                serial=serial,
                not_before=not_before,
                public_key=public_key,
            )
        )
    else:
        response = issuer.issue(
            IssueRequest(
                name=cert.name,
                revision=rev.number,
                identifiers=identifiers,
                csr_pem=build_csr(key, list(identifiers)),
                key_type=KeyType(rev.key_type),
                validity=validity,
                now=rt.clock.now(),
                order_url=rev.order_url,
                checkpoint=checkpoint,
                serial=serial,
                not_before=not_before,
                replacing_pem=_replacing(work),
            )
        )
    facts = response.facts or certificate_facts(response.certificate_pem)
    if facts.public_key_der != key_der:
        raise IssuanceError(
            f"Issuer {cert.issuer!r} returned a certificate for another key than the one "
            f"certman sealed for {cert.name!r}; it was not stored."
        )
    if planned and facts.serial != planned:
        raise IssuanceError(
            f"Issuer {cert.issuer!r} returned serial {facts.serial} for {cert.name!r}, not the "
            f"planned {planned}; it was not stored."
        )
    rev.certificate_pem = response.certificate_pem.decode()
    rev.chain_pem = response.chain_pem.decode()
    rev.serial = facts.serial
    rev.fingerprint_sha256 = facts.fingerprint_sha256
    rev.not_before = facts.not_before
    rev.not_after = facts.not_after
    if response.order_url:
        rev.order_url = response.order_url
    transition(rev, S.ISSUED, rt.clock.now(), name=cert.name)


def bundle_for(rt: Runtime, work: Work) -> bytes:
    """The encrypted archive bundle of an issued revision."""
    cert, rev = work.cert, work.rev
    assert rev.certificate_pem and rev.sealed_key
    return seal_bundle(
        rt.key_wrapper,
        name=cert.name,
        revision=rev.number,
        certificate_pem=rev.certificate_pem.encode(),
        chain_pem=(rev.chain_pem or "").encode(),
        sealed_key=work.sealed or WrappedKey.from_json(rev.sealed_key),
        metadata={
            "name": cert.name,
            "revision": str(rev.number),
            "issuer": cert.issuer,
            "serial": rev.serial or "",
            "fingerprint_sha256": rev.fingerprint_sha256 or "",
            "not_after": rev.not_after.isoformat() if rev.not_after else "",
        },
    )


def archive_request(rt: Runtime, work: Work) -> ArchivePutRequest:
    return ArchivePutRequest(
        name=work.cert.name,
        revision=work.rev.number,
        body=bundle_for(rt, work),
        metadata={
            "certificate": work.cert.name,
            "revision": str(work.rev.number),
            "fingerprint": work.rev.fingerprint_sha256 or "",
        },
    )


def record_archive(work: Work, ref: ArchiveRef, now: datetime) -> None:
    work.rev.archive_location = ref.location
    work.rev.archive_sha256 = ref.sha256
    work.rev.archive_extra = json.dumps(dict(ref.extra)) if ref.extra else None
    transition(work.rev, S.ARCHIVED, now, name=work.cert.name)


def archive(rt: Runtime, work: Work) -> None:
    """ISSUED -> ARCHIVED: the encrypted bundle stored; its location and SHA-256 recorded."""
    record_archive(work, rt.archive.put(archive_request(rt, work)), rt.clock.now())


def targets_of(cert: ManagedCertificate) -> list[str]:
    """The names of the targets the certificate is rolled out to (most have none)."""
    return [] if cert.targets == "[]" else list(json.loads(cert.targets))


def deploy(rt: Runtime, work: Work) -> None:
    """ARCHIVED -> DEPLOYED: run the certificate's targets (none: nothing to do)."""
    targets = targets_of(work.cert)
    if targets:
        # What was cleaned up afterwards (a replaced ARN deleted): told to the operator.
        notes = roll_out_work(rt, work, targets)
        work.notes.extend(f"{work.cert.name}: {note}" for note in notes)
    transition(work.rev, S.DEPLOYED, rt.clock.now(), name=work.cert.name)


def roll_out_work(
    rt: Runtime, work: Work, targets: list[str], *, canary: str | None = None, again: bool = False
) -> list[str]:
    """Run the rollout executor over the revision's targets; its progress lands in the rows
    (and is committed by ``work.checkpoint``, when there is one) as it goes."""
    cert, rev = work.cert, work.rev
    assert rev.certificate_pem is not None
    rollout = Rollout(
        name=cert.name,
        revision=rev.number,
        certificate_pem=rev.certificate_pem.encode(),
        chain_pem=(rev.chain_pem or "").encode(),
        private_key_pem=lambda: private_key_pem(
            load_private_key_der(unseal_private_key(rt, cert.name, rev))
        ),
        previous=lambda: previous_material(rt, work),
        deployers={t: rt.deployer(t) for t in targets},  # an unknown target is refused here
        deployer_of=lambda t: rt.deployer(t) if t in rt.config.targets else None,
        previous_records=load_records(work.previous.deploy_state) if work.previous else {},
        primary_region=rt.aws.region,
        probe=bool(cert.current_revision),
        canary=canary,
        published=lambda: _imported(rt, work),
        again=again,
    )
    record = RolloutRecord(units=load_records(rev.deploy_state), acm_arn=cert.acm_arn)

    def checkpoint() -> None:
        _record_rollout(work, record)
        if work.checkpoint is not None:
            work.checkpoint()

    try:
        return roll_out(rollout, record, checkpoint)
    finally:
        _record_rollout(work, record)


def _record_rollout(work: Work, record: RolloutRecord) -> None:
    """Copy what the rollout recorded into the rows."""
    if record.units != load_records(work.rev.deploy_state):
        work.rev.deploy_state = dump_records(record.units)
    if record.acm_arn != work.cert.acm_arn:
        work.cert.acm_arn = record.acm_arn


def _imported(rt: Runtime, work: Work) -> None:
    """A rollout's ARN publishers (ACM) verified: an in-flight revision becomes imported."""
    if S(work.rev.state).in_flight:
        transition(work.rev, S.IMPORTED, rt.clock.now(), name=work.cert.name)


def previous_material(rt: Runtime, work: Work) -> Material | None:
    """The previous revision's certificate, chain and key: what a rollback restores."""
    prev = work.previous
    if prev is None or prev.certificate_pem is None or prev.sealed_key is None:
        return None
    return Material(
        revision=prev.number,
        certificate_pem=prev.certificate_pem.encode(),
        chain_pem=(prev.chain_pem or "").encode(),
        private_key_pem=private_key_pem(
            load_private_key_der(unseal_private_key(rt, work.cert.name, prev))
        ),
    )


def activate(rt: Runtime, work: Work) -> None:
    """-> ACTIVE: the certificate now points at this revision; the previous one is superseded."""
    cert, rev = work.cert, work.rev
    now = rt.clock.now()
    if work.previous is not None and work.previous.state == S.ACTIVE:
        transition(work.previous, S.SUPERSEDED, now, name=cert.name)
    assert rev.not_before and rev.not_after
    renew_before = (
        timedelta(seconds=cert.renew_before_seconds) if cert.renew_before_seconds else None
    )
    cert.current_revision = rev.number
    cert.serial = rev.serial
    cert.fingerprint_sha256 = rev.fingerprint_sha256
    cert.not_before = rev.not_before
    cert.not_after = rev.not_after
    # RFC 9773 section 4.2: when the CA suggests a window, renew at a random point in it,
    # and ask again when its Retry-After has passed (renewal_info.refresh_renewal_windows).
    schedule = follow_window(
        rt,
        issuer_name=cert.issuer,
        rev=rev,
        renewal_due_at=renewal_due_at(
            not_before=rev.not_before, not_after=rev.not_after, renew_before=renew_before
        ),
        now=now,
        fresh=True,
    )
    cert.renewal_due_at = schedule.renewal_due_at
    cert.ari_next_fetch_at = schedule.ari_next_fetch_at
    cert.status = CertificateStatus.ACTIVE
    cert.failures = 0
    cert.next_attempt_at = None
    cert.last_error = None
    rev.error = None
    transition(rev, S.ACTIVE, now, name=cert.name)


StepFn = Callable[[Runtime, Work], None]
# What to run from each in-flight state; ORDERED resumes the same issuance step.
NEXT_STEP: dict[RevisionState, StepFn] = {
    S.PLANNED: seal_key,
    S.KEY_SEALED: issue,
    S.ORDERED: issue,
    S.ISSUED: archive,
    S.ARCHIVED: deploy,
    S.IMPORTED: deploy,
    S.DEPLOYED: activate,
}
