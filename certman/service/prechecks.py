"""Refusals before anything is planned: a master key that cannot unseal, an issuer's precheck."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, cast

from sqlmodel import Session, col, select

from certman.interfaces import PrecheckRequest, SupportsPrecheck, supports
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.models import EncryptionContext, KeyType, WrappedKey

if TYPE_CHECKING:
    from certman.service.runtime import Runtime


def check_master_key(runtime: Runtime, certificate: ManagedCertificate | None = None) -> None:
    """Raise KeyWrapError, before anything is written, if the key wrapper cannot open what
    it sealed.

    A missing or replaced master key is the operator's to fix. Found inside a lifecycle
    step, it would be recorded as a permanent failure (the certificate marked failed, an
    in-flight revision, perhaps already issued, abandoned); found half-way through `ca
    create` or a rotation, new keys would be sealed under a key that opens nothing else in
    the inventory. With ``certificate``: the key sealed most recently for it, the one its
    renewal unseals (one unwrap: one KMS Decrypt). Without: every CA key the wrapper sealed
    and the newest leaf key.
    """
    wrapper = runtime.key_wrapper  # loading it refuses a missing master key file
    with runtime.session() as session:
        sealed = _sealed_keys(session, certificate)
    for text, context in sealed:
        wrapper.unwrap(WrappedKey.from_json(text), context)


def _sealed_keys(
    session: Session, certificate: ManagedCertificate | None
) -> list[tuple[str, EncryptionContext]]:
    from certman.service.authorities import key_context as ca_key_context
    from certman.service.ca_keys import is_resident
    from certman.service.steps import key_context

    query = (
        select(Revision.sealed_key, Revision.number, ManagedCertificate.name)
        .join(ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id))
        .where(col(Revision.sealed_key).is_not(None))
    )
    keys: list[tuple[str, EncryptionContext]] = []
    if certificate is not None:
        # The in-flight revision's key if it has one yet, else the active revision's.
        numbers = [n for n in (certificate.latest_revision, certificate.current_revision) if n]
        if not numbers:
            return keys
        query = (
            query.where(col(Revision.certificate_id) == certificate.id)
            .where(col(Revision.number).in_(numbers))
            .order_by(col(Revision.number).desc())
        )
    else:
        for name, sealed in session.exec(
            select(Authority.name, Authority.intermediate_sealed_key)
        ).all():
            if not is_resident(sealed):  # an HSM-resident CA key: nothing the wrapper sealed
                keys.append((sealed, ca_key_context(name, "intermediate")))
        query = query.order_by(col(Revision.id).desc())
    newest = session.exec(query.limit(1)).first()
    if newest is not None:
        text, number, name = newest
        assert text is not None
        keys.append((text, key_context(name, number)))
    return keys


def issuer_precheck(
    runtime: Runtime,
    issuer_name: str,
    identifiers: tuple[str, ...],
    key_type: KeyType,
    validity: timedelta,
) -> None:
    """The issuer's own refusals (ACME: challenge, account, busy port), before any key."""
    issuer = runtime.issuer(issuer_name)
    if supports(issuer, SupportsPrecheck):  # once per certificate on the bulk path
        cast(SupportsPrecheck, issuer).precheck(
            PrecheckRequest(
                identifiers=identifiers,
                key_type=key_type,
                validity=validity,
                now=runtime.clock.now(),
            )
        )
