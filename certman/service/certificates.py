"""A managed certificate and its revisions, looked up in the inventory by name and number."""

from __future__ import annotations

from sqlmodel import Session, select

from certman.errors import NotFoundError
from certman.inventory.tables import ManagedCertificate, Revision


def get_certificate(session: Session, name: str) -> ManagedCertificate:
    cert = find_certificate(session, name)
    if cert is None:
        raise NotFoundError(f"No certificate named {name!r}; `certman list` shows the known ones.")
    return cert


def find_certificate(session: Session, name: str) -> ManagedCertificate | None:
    return session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).first()


def revision_of(session: Session, cert: ManagedCertificate, number: int) -> Revision | None:
    """Revision ``number`` of ``cert``; None for 0 (no such revision yet)."""
    if not number:
        return None
    return session.exec(
        select(Revision).where(Revision.certificate_id == cert.id).where(Revision.number == number)
    ).first()
