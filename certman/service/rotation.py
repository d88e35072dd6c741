"""`certman keys rotate`: a new master key version, every sealed key re-wrapped under it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from certman.contracts.key_wrapper import (
    KeyWrapper,
    SupportsKeyCreation,
    SupportsRewrap,
    SupportsVersions,
)
from certman.errors import ConfigError, OperationError
from certman.inventory.audit import append_event
from certman.inventory.audit_seal import (
    ANCHORS_FROM,
    sealed_audit_key_context,
    with_anchors_from,
)
from certman.inventory.tables import (
    AcmeAccount,
    AuditKey,
    Authority,
    ManagedCertificate,
    Revision,
)
from certman.models import EncryptionContext, WrappedKey
from certman.service.authorities import key_context as ca_key_context
from certman.service.ca_keys import RESIDENT
from certman.service.leases import Lease, claim_ids, lease_for, release_ids
from certman.service.prechecks import check_master_key
from certman.service.runtime import Runtime
from certman.service.steps import key_context

BATCH = 200


@dataclass(frozen=True, kw_only=True)
class RotationReport:
    new_version: int
    keys_rewrapped: int


def rotate_master_key(rt: Runtime) -> RotationReport:
    """Add a master key version, then re-wrap everything sealed under an older one.

    The new version is persisted first; re-wrapping commits in batches and skips what is
    already under the new version, so an interrupted rotation is finished by running it
    again. Retired versions stay able to unwrap, as KMS keeps old backing keys: archived
    bundles are immutable records (S3 object lock may even forbid rewriting them), so they
    keep the version they were sealed under.
    """

    from certman.keywrap.dispatch import sealing_wrapper

    wrapper = rt.key_wrapper
    versions = sealing_wrapper(wrapper)
    if not isinstance(versions, SupportsVersions) or not isinstance(wrapper, SupportsRewrap):
        raise ConfigError(
            f"The {wrapper.wrapper_type!r} key wrapper has no local versions to rotate; "
            "rotate the key in its own service (KMS, HSM) instead."
        )
    check_master_key(rt)
    version = versions.rotate()
    keys = rewrap_everything(rt, wrapper, wrapper)
    with rt.session() as session:
        append_event(
            session,
            rt.clock.now(),
            "keys.rotate",
            "master-key",
            new_version=version,
            keys_rewrapped=keys,
        )
        session.commit()
    return RotationReport(new_version=version, keys_rewrapped=keys)


def rewrap_everything(rt: Runtime, source: KeyWrapper, target: KeyWrapper) -> int:
    """Re-seal, under ``target``, every sealed secret ``target`` does not hold yet.

    CA keys, leaf keys, ACME account keys, the audit key and SSE-C customer keys; batches
    commit as they go and what is done is skipped, so an interrupted run is finished by
    running it again.
    """
    from certman.keywrap.envelope import rewrap

    def needs(sealed: WrappedKey) -> bool:
        if isinstance(target, SupportsRewrap):
            return target.needs_rewrap(sealed)
        return sealed.wrapper != target.wrapper_type

    def moved(text: str, context: EncryptionContext) -> str | None:
        sealed = WrappedKey.from_json(text)
        if sealed.wrapper == RESIDENT:
            return None  # a CA key that lives in an HSM: nothing sealed to move
        return rewrap(source, target, sealed, context).to_json() if needs(sealed) else None

    count = 0
    with rt.session() as session:
        for ca in session.exec(select(Authority)).all():
            for role, attr in (
                ("root", "root_sealed_key"),
                ("intermediate", "intermediate_sealed_key"),
            ):
                new = moved(getattr(ca, attr), ca_key_context(ca.name, role))
                if new is not None:
                    setattr(ca, attr, new)
                    count += 1
            session.add(ca)
        for account in session.exec(select(AcmeAccount)).all():
            context = EncryptionContext(
                certificate=f"acme:{account.issuer}", revision=0, purpose="acme-account-key"
            )
            new = moved(account.sealed_key, context)
            if new is not None:
                account.sealed_key = new
                session.add(account)
                count += 1
        for audit_key in session.exec(select(AuditKey)).all():
            sealed = WrappedKey.from_json(audit_key.sealed_key)
            new = moved(audit_key.sealed_key, sealed_audit_key_context(sealed, audit_key.first_seq))
            if new is not None:
                # The context's anchors_from goes with the key (with_anchors_from).
                anchors_from = sealed.extra.get(ANCHORS_FROM)
                new = with_anchors_from(
                    WrappedKey.from_json(new), None if anchors_from is None else int(anchors_from)
                ).to_json()
                audit_key.sealed_key = new
                session.add(audit_key)
                count += 1
        session.commit()
    lease = lease_for(rt, "rotate")
    waiting: set[int] = set()
    last_id = 0
    while True:
        with rt.session() as session:
            ids = [
                cert_id
                for cert_id in session.exec(
                    select(ManagedCertificate.id)
                    .where(col(ManagedCertificate.id) > last_id)
                    .order_by(col(ManagedCertificate.id))
                    .limit(BATCH)
                ).all()
                if cert_id is not None
            ]
            if not ids:
                break
            last_id = ids[-1]
            count += _rewrap_certificates(rt, session, ids, lease, moved, waiting)
    # Certificates another process was working on: re-wrapped once it is done, for as long
    # as a lease lasts (a process that stopped writing longer than that has lost its lease).
    deadline = time.monotonic() + lease.duration.total_seconds()
    while waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        with rt.session() as session:
            count += _rewrap_certificates(rt, session, sorted(waiting), lease, moved, waiting)
    if waiting:
        raise OperationError(
            f"{len(waiting)} certificates stayed in use by another process for a whole lease "
            f"and were not re-sealed ({count} secrets were); run the same command again "
            "once that process is done."
        )
    return count


def _rewrap_certificates(
    rt: Runtime,
    session: Session,
    ids: list[int],
    lease: Lease,
    moved: Callable[[str, EncryptionContext], str | None],
    waiting: set[int],
) -> int:
    """Re-seal the revisions of the certificates ``ids`` that nobody else holds, under their
    leases, in one transaction; those held elsewhere are left in ``waiting``."""
    now = rt.clock.now()
    mine = claim_ids(session, ids, lease, now)
    waiting.difference_update(mine)
    waiting.update(set(ids) - mine)
    if not mine:
        session.rollback()
        return 0
    count = 0
    rows = session.exec(
        select(Revision, ManagedCertificate.name)
        .join(ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id))
        .where(col(Revision.certificate_id).in_(sorted(mine)))
        .order_by(col(Revision.id))
    ).all()
    for rev, name in rows:
        if rev.sealed_key:
            new = moved(rev.sealed_key, key_context(name, rev.number))
            if new is not None:
                rev.sealed_key = new
                count += 1
        extra = json.loads(rev.archive_extra) if rev.archive_extra else {}
        if extra.get("sse_c_key"):
            context = EncryptionContext(
                certificate=name, revision=rev.number, purpose="archive-sse-c"
            )
            new = moved(extra["sse_c_key"], context)
            if new is not None:
                extra["sse_c_key"] = new
                rev.archive_extra = json.dumps(extra)
                count += 1
        session.add(rev)
    session.flush()
    release_ids(session, mine, lease)
    session.commit()
    return count


@dataclass(frozen=True, kw_only=True)
class MoveReport:
    to: str
    keys_rewrapped: int


def move_keys(rt: Runtime, to_type: str, *, setting: str) -> MoveReport:
    """`certman keys rotate --to TYPE`: re-seal every secret with another key wrapper.

    Plaintext stays in memory. The runtime can open records of either wrapper, so
    certman keeps working half-way; afterwards the operator sets [kms] type = TYPE. An
    unknown TYPE is refused naming ``setting``, the flag it came from.
    """
    if to_type == "local" and not rt.config.master_key_path.exists():
        from certman.keywrap.local import LocalMasterKey

        LocalMasterKey.create(rt.config.master_key_path)
    target = rt.build_key_wrapper(to_type, setting=setting)
    if isinstance(target, SupportsKeyCreation):  # an HSM token gets its key on the first move
        target.ensure_key()
    keys = rewrap_everything(rt, rt.key_wrapper, target)
    with rt.session() as session:
        append_event(
            session, rt.clock.now(), "keys.rotate", "key-wrapper", to=to_type, keys_rewrapped=keys
        )
        session.commit()
    return MoveReport(to=to_type, keys_rewrapped=keys)
