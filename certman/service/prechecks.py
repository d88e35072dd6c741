"""Refusals before anything is planned: a master key that cannot unseal, an issuer's precheck."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, cast

from sqlmodel import Session, col, select

from certman.contracts import supports
from certman.contracts.issuer import PrecheckRequest, SupportsPrecheck
from certman.errors import KeyWrapError
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.lifecycle.states import RevisionState
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
    the inventory. With ``certificate``: the key its renewal will unseal - the in-flight
    revision's, or the current one's when the renewal reuses it (one unwrap: one KMS
    Decrypt); a renewal with a new key needs no old key, so then only a probe is sealed and
    unsealed (a damaged old key must not stop the renewal that replaces it). Without: every
    CA key the wrapper sealed and the newest leaf key.
    """
    wrapper = runtime.key_wrapper  # loading it refuses a missing master key file
    if certificate is not None:
        with runtime.session() as session:
            needed = _key_the_renewal_unseals(session, certificate)
        if needed is None:
            if certificate.current_revision:  # a renewal: the wrapper must seal and open
                _probe(runtime)
            return
        text, context, reused = needed
        try:
            wrapper.unwrap(WrappedKey.from_json(text), context)
        except KeyWrapError as e:
            if not reused:
                raise
            raise KeyWrapError(
                f"Certificate {certificate.name!r} reuses its key on renewal, and the sealed "
                f"key of revision {context.revision} cannot be unsealed: "
                f"{e.message.rstrip('.')}. Restore the key, or revoke the certificate with "
                "--reason keyCompromise so that its renewal generates a new key."
            ) from None
        return
    with runtime.session() as session:
        sealed = _sealed_keys(session)
    for text, context in sealed:
        wrapper.unwrap(WrappedKey.from_json(text), context)


_PROBE = EncryptionContext(certificate="certman-precheck", revision=0, purpose="probe")


def _probe(runtime: Runtime) -> None:
    """The key wrapper seals and unseals (a random probe, never stored)."""
    from certman.keywrap.envelope import new_data_key

    wrapper = runtime.key_wrapper
    probe = new_data_key()
    if wrapper.unwrap(wrapper.wrap(probe, _PROBE), _PROBE) != probe:
        raise KeyWrapError(
            f"The {wrapper.wrapper_type} key wrapper did not give back what it sealed; "
            "check its configuration before renewing."
        )


def _key_the_renewal_unseals(
    session: Session, certificate: ManagedCertificate
) -> tuple[str, EncryptionContext, bool] | None:
    """The sealed key a renewal of ``certificate`` will unseal, and whether it is a reused
    one; None when it generates a new key."""
    from certman.service.steps import key_context

    assert certificate.id is not None
    name = certificate.name
    latest = _revision(session, certificate.id, certificate.latest_revision)
    resuming = latest is not None and RevisionState(latest.state).in_flight
    if resuming and latest is not None and latest.sealed_key is not None:
        return latest.sealed_key, key_context(name, latest.number), False
    if not certificate.reuse_key:
        return None
    current = _revision(session, certificate.id, certificate.current_revision)
    if current is None or current.sealed_key is None or not current.certificate_pem:
        return None
    from certman.pki import certificate_facts
    from certman.service.revocation import compromised_public_keys

    compromised = compromised_public_keys(session, certificate)
    if compromised:  # steps._may_reuse_key: a key revoked for keyCompromise is not reused
        public = certificate_facts(current.certificate_pem.encode()).public_key_der
        if public in compromised:
            return None
    return current.sealed_key, key_context(name, current.number), True


def _revision(session: Session, certificate_id: int, number: int) -> Revision | None:
    if not number:
        return None
    return session.exec(
        select(Revision)
        .where(Revision.certificate_id == certificate_id)
        .where(Revision.number == number)
    ).first()


def _sealed_keys(session: Session) -> list[tuple[str, EncryptionContext]]:
    """Every CA key the wrapper sealed and the newest leaf key."""
    from certman.service.authorities import key_context as ca_key_context
    from certman.service.ca_keys import is_resident
    from certman.service.steps import key_context

    keys: list[tuple[str, EncryptionContext]] = []
    for name, sealed in session.exec(
        select(Authority.name, Authority.intermediate_sealed_key)
    ).all():
        if not is_resident(sealed):  # an HSM-resident CA key: nothing the wrapper sealed
            keys.append((sealed, ca_key_context(name, "intermediate")))
    newest = session.exec(
        select(Revision.sealed_key, Revision.number, ManagedCertificate.name)
        .join(ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id))
        .where(col(Revision.sealed_key).is_not(None))
        .order_by(col(Revision.id).desc())
        .limit(1)
    ).first()
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
