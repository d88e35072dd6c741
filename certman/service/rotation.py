"""`certman keys rotate`: a new master key version, every sealed key re-wrapped under it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from certman.errors import ConfigError
from certman.interfaces import SupportsRewrap
from certman.inventory.audit import append_event
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.models import WrappedKey
from certman.service.authorities import key_context as ca_key_context
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
    from certman.keywrap.envelope import rewrap

    wrapper = rt.key_wrapper
    rotate = getattr(wrapper, "rotate", None)
    if rotate is None or not isinstance(wrapper, SupportsRewrap):
        raise ConfigError(
            f"The {wrapper.wrapper_type!r} key wrapper has no local versions to rotate; "
            "rotate the key in its own service (KMS, HSM) instead."
        )
    _check_master_key(rt)
    version = rotate()
    keys = 0
    with rt.session() as session:
        for ca in session.exec(select(Authority)).all():
            for role, attr in (
                ("root", "root_sealed_key"),
                ("intermediate", "intermediate_sealed_key"),
            ):
                sealed = WrappedKey.from_json(getattr(ca, attr))
                if wrapper.needs_rewrap(sealed):
                    new = rewrap(wrapper, wrapper, sealed, ca_key_context(ca.name, role))
                    setattr(ca, attr, new.to_json())
                    keys += 1
            session.add(ca)
        session.commit()

    last_id = 0
    while True:
        with rt.session() as session:
            rows = session.exec(
                select(Revision, ManagedCertificate.name)
                .join(
                    ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id)
                )
                .where(col(Revision.id) > last_id)
                .where(col(Revision.sealed_key).is_not(None))
                .order_by(col(Revision.id))
                .limit(BATCH)
            ).all()
            if not rows:
                break
            for rev, name in rows:
                assert rev.id is not None and rev.sealed_key is not None
                last_id = rev.id
                context = key_context(name, rev.number)
                sealed = WrappedKey.from_json(rev.sealed_key)
                if wrapper.needs_rewrap(sealed):
                    rev.sealed_key = rewrap(wrapper, wrapper, sealed, context).to_json()
                    keys += 1
                session.add(rev)
            session.commit()
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


def _check_master_key(rt: Runtime) -> None:
    """Raise KeyWrapError before rotating if the master key cannot open what it sealed.

    With a replaced master key file, rotating would add a version to the wrong file and
    then fail half-way; the CA keys (and the newest leaf key) prove it is the right one.
    """
    wrapper = rt.key_wrapper
    with rt.session() as session:
        for ca in session.exec(select(Authority)).all():
            wrapper.unwrap(
                WrappedKey.from_json(ca.intermediate_sealed_key),
                ca_key_context(ca.name, "intermediate"),
            )
        newest = session.exec(
            select(Revision, ManagedCertificate.name)
            .join(ManagedCertificate, col(ManagedCertificate.id) == col(Revision.certificate_id))
            .where(col(Revision.sealed_key).is_not(None))
            .order_by(col(Revision.id).desc())
            .limit(1)
        ).first()
    if newest is not None:
        rev, name = newest
        assert rev.sealed_key is not None
        wrapper.unwrap(WrappedKey.from_json(rev.sealed_key), key_context(name, rev.number))
