"""`certman delete`: stop tracking a certificate; its archived bundles and audit events stay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import delete
from sqlmodel import col, select

from certman.contracts import supports
from certman.contracts.archive import ArchiveStore, SupportsNameListing
from certman.errors import AlreadyExistsError, ArchiveError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import Notification, Revision
from certman.lifecycle.states import RevisionState
from certman.service.certificates import get_certificate
from certman.service.runtime import Runtime
from certman.service.steps import targets_of


@dataclass(frozen=True, kw_only=True)
class Deleted:
    name: str
    revisions: int
    archived: int  # bundles left in the archive
    targets: tuple[str, ...]  # where it may still be deployed


def deletion_refusal(rt: Runtime, name: str, *, force: bool) -> None:
    """Raise when ``name`` must not be deleted as asked (unknown, in flight, or deployed)."""
    with rt.session() as session:
        cert = get_certificate(session, name)
        latest = session.exec(
            select(Revision.state)
            .where(Revision.certificate_id == cert.id)
            .where(Revision.number == cert.latest_revision)
        ).first()
    targets = targets_of(cert)
    if force:
        return
    if latest is not None and RevisionState(latest).in_flight:
        raise ValidationError(
            f"Certificate {name!r} has revision {cert.latest_revision} in flight ({latest}); "
            "let `certman renew` finish it, or pass --force to delete it anyway."
        )
    if targets and cert.current_revision:
        raise ValidationError(
            f"Certificate {name!r} is deployed to {', '.join(targets)}, and deleting it does "
            "not remove it there; take it off those targets first, or pass --force."
        )


def delete_certificate(rt: Runtime, name: str, *, force: bool = False) -> Deleted:
    """Remove the certificate and its revisions from the inventory, in one transaction.

    The archive is not touched and the audit trail only grows: the event records every
    revision with its serial and archive reference, so the bundles can still be found.
    Revocations stay too (a CRL must go on listing a revoked serial).
    """
    deletion_refusal(rt, name, force=force)
    with rt.session() as session:
        cert = get_certificate(session, name)
        revisions = session.exec(
            select(Revision)
            .where(Revision.certificate_id == cert.id)
            .order_by(col(Revision.number))
        ).all()
        session.execute(delete(Revision).where(col(Revision.certificate_id) == cert.id))
        session.execute(delete(Notification).where(col(Notification.certificate) == name))
        session.delete(cert)
        append_event(
            session,
            rt.clock.now(),
            "certificate.delete",
            name,
            forced=force,
            targets=targets_of(cert),
            revisions=[
                {
                    "revision": r.number,
                    "state": r.state,
                    "serial": r.serial,
                    "archive_location": r.archive_location,
                    "archive_sha256": r.archive_sha256,
                }
                for r in revisions
            ],
        )
        session.commit()
    return Deleted(
        name=name,
        revisions=len(revisions),
        archived=sum(1 for r in revisions if r.archive_location),
        targets=tuple(targets_of(cert)),
    )


def refuse_archived_names(rt: Runtime, names: Sequence[str]) -> None:
    """Refuse new certificates whose name still has bundles in the archive (a deleted one's).

    A new certificate starts again at revision 1, and archiving it would overwrite the
    deleted certificate's bundles, which `certman delete` promises to keep.
    """
    if not names:
        return
    try:
        held = names_with_bundles(rt.archive, names)
    except ArchiveError:
        # An archive that cannot be listed now fails the archive step too, where the
        # lifecycle reports it and a rerun resumes; it is no reason to refuse up front
        # (nor to ask again for each of a thousand names).
        return
    for name in names:
        if name in held:
            raise AlreadyExistsError(
                f"The archive still holds bundles of a deleted certificate named {name!r}; "
                "choose another name, or move those bundles out of the archive first."
            )


def names_with_bundles(store: ArchiveStore, names: Sequence[str]) -> set[str]:
    """Those of ``names`` the archive holds bundles of: in one pass where the store can
    (SupportsNameListing), else one listing per name (the ArchiveStore contract alone)."""
    if supports(store, SupportsNameListing):
        return cast(SupportsNameListing, store).names_with_bundles(names)
    return {name for name in names if store.list(f"{name}/")}
