"""Private CAs in the inventory: created with sealed keys, loaded once per process to sign."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from certman.errors import AlreadyExistsError, NotFoundError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import Authority, Revocation
from certman.models import EncryptionContext, KeyType, RevocationReason
from certman.names import check_name
from certman.service.prechecks import check_master_key

if TYPE_CHECKING:
    from certman.ca import PrivateCA
    from certman.config import Config
    from certman.contracts.build_context import BuildContext
    from certman.contracts.issuer import Issuer
    from certman.service.runtime import Runtime

# A CA's name is also its default issuer's name, and goes into "ca:NAME" key contexts.
MAX_CA_NAME = 63


def key_context(ca_name: str, role: str) -> EncryptionContext:
    return EncryptionContext(certificate=f"ca:{ca_name}", revision=0, purpose=f"ca-{role}-key")


@dataclass(frozen=True, kw_only=True)
class AuthoritySpec:
    name: str
    key_type: KeyType
    common_name: str
    max_validity: timedelta
    permitted_domains: tuple[str, ...] = ()
    root_validity: timedelta = timedelta(days=3650)
    intermediate_validity: timedelta = timedelta(days=1825)
    crl_url: str | None = None
    allowed_key_types: tuple[KeyType, ...] = ()  # of the leaves it signs; empty: every one
    allow_wildcards: bool = True
    client_auth: bool = False
    key_store: str = "sealed"  # or "hsm": both keys generated in the [kms] PKCS#11 token

    @classmethod
    def from_config(
        cls,
        config: Config,
        name: str,
        *,
        key_type: KeyType | None = None,
        common_name: str | None = None,
        max_validity: timedelta | None = None,
        permitted_domains: tuple[str, ...] = (),
        crl_url: str | None = None,
        allowed_key_types: tuple[KeyType, ...] = (),
        allow_wildcards: bool | None = None,
        client_auth: bool | None = None,
        key_store: str | None = None,
    ) -> AuthoritySpec:
        """A new CA from the [ca] settings, overridden by what the operator gave (not None)."""
        return cls(
            name=name,
            key_type=key_type or config.key_type("ca", "key_type"),
            common_name=common_name or str(config.get("ca", "common_name")),
            max_validity=max_validity or config.required_duration("ca", "max_validity"),
            permitted_domains=permitted_domains,
            root_validity=config.required_duration("ca", "root_validity"),
            intermediate_validity=config.required_duration("ca", "intermediate_validity"),
            crl_url=crl_url or str(config.get("ca", "crl_url")) or None,
            allowed_key_types=allowed_key_types or config.key_types("ca", "allowed_key_types"),
            allow_wildcards=bool(config.get("ca", "allow_wildcards"))
            if allow_wildcards is None
            else allow_wildcards,
            client_auth=bool(config.get("ca", "client_auth"))
            if client_auth is None
            else client_auth,
            key_store=key_store or str(config.get("ca", "key_store")),
        )


def authority_names(runtime: Runtime) -> list[str]:
    with runtime.session() as session:
        return list(session.exec(select(Authority.name).order_by(col(Authority.name))).all())


def authority_exists(runtime: Runtime, name: str) -> bool:
    with runtime.session() as session:
        return session.exec(select(Authority.id).where(Authority.name == name)).first() is not None


def get_authority(runtime: Runtime, name: str) -> Authority:
    with runtime.session() as session:
        row = session.exec(select(Authority).where(Authority.name == name)).first()
    if row is None:
        known = ", ".join(authority_names(runtime)) or "none"
        raise NotFoundError(
            f"Unknown CA {name!r}; known CAs: {known}. Create one with `certman ca create`."
        )
    return row


def create_authority(runtime: Runtime, spec: AuthoritySpec) -> Authority:
    """Create root + intermediate, seal both keys, and store them with the policy."""
    from certman.ca import SigningPolicy, create_hierarchy
    from certman.domains import normalize_name
    from certman.pki import private_key_to_der

    check_name(spec.name, "CA", max_length=MAX_CA_NAME)
    if spec.max_validity <= timedelta(0):
        raise ValidationError("--max-validity must be longer than zero.")
    domains = tuple(normalize_name(d).value for d in spec.permitted_domains)
    if any(d.startswith("*.") for d in domains):
        raise ValidationError("--permitted-domain takes a domain like example.com, not a wildcard.")
    if spec.key_store not in ("sealed", "hsm"):
        raise ValidationError(f'--key-store must be "sealed" or "hsm", not {spec.key_store!r}.')
    if authority_exists(runtime, spec.name):
        raise AlreadyExistsError(f"A CA named {spec.name!r} already exists; choose another name.")
    check_master_key(runtime)  # every CA key and the newest leaf key must open
    policy = SigningPolicy(
        max_validity=spec.max_validity,
        permitted_domains=domains,
        allowed_key_types=spec.allowed_key_types or tuple(KeyType),
        allow_wildcards=spec.allow_wildcards,
        # A CA limited to some domains signs no IP address (its name constraints exclude them).
        allow_ip=not domains,
        client_auth=spec.client_auth,
        crl_url=spec.crl_url or None,
    )
    now = runtime.clock.now()
    resident = None
    if spec.key_store == "hsm":
        from certman.service.ca_keys import new_resident_keys

        resident = new_resident_keys(runtime, spec.name, spec.key_type)
    hierarchy = create_hierarchy(
        name=spec.name,
        common_name=spec.common_name,
        key_type=spec.key_type,
        policy=policy,
        now=now,
        root_validity=spec.root_validity,
        intermediate_validity=spec.intermediate_validity,
        keys=resident,
    )
    if resident is not None:
        from certman.service.ca_keys import reference_record

        root_record = reference_record(hierarchy.root_key)
        inter_record = reference_record(hierarchy.intermediate_key)
    else:
        wrapper = runtime.key_wrapper
        root_record = wrapper.wrap(
            private_key_to_der(hierarchy.root_key), key_context(spec.name, "root")
        ).to_json()
        inter_record = wrapper.wrap(
            private_key_to_der(hierarchy.intermediate_key), key_context(spec.name, "intermediate")
        ).to_json()
    from certman.ca import certificate_to_pem

    row = Authority(
        name=spec.name,
        key_type=spec.key_type.value,
        common_name=spec.common_name,
        policy=json.dumps(policy.to_dict(), sort_keys=True),
        root_certificate_pem=certificate_to_pem(hierarchy.root_certificate).decode(),
        root_sealed_key=root_record,
        intermediate_certificate_pem=certificate_to_pem(
            hierarchy.intermediate_certificate
        ).decode(),
        intermediate_sealed_key=inter_record,
        created_at=now,
    )
    with runtime.session() as session:
        session.add(row)
        append_event(
            session,
            now,
            "ca.create",
            spec.name,
            key_type=spec.key_type.value,
            permitted_domains=list(domains),
            max_validity_seconds=int(spec.max_validity.total_seconds()),
            allowed_key_types=[k.value for k in policy.allowed_key_types],
            allow_wildcards=policy.allow_wildcards,
            client_auth=policy.client_auth,
            key_store=spec.key_store,
        )
        session.commit()
    return row


def load_private_ca(runtime: Runtime, name: str) -> PrivateCA:
    """Unseal the intermediate key (in memory only), or reach it in the HSM, and build the
    signer."""
    from cryptography import x509

    from certman.ca import PrivateCA, SigningPolicy
    from certman.service.ca_keys import ca_private_key

    row = get_authority(runtime, name)
    intermediate_key = ca_private_key(runtime, row, "intermediate")
    return PrivateCA(
        name=name,
        root_certificate=x509.load_pem_x509_certificate(row.root_certificate_pem.encode()),
        intermediate_certificate=x509.load_pem_x509_certificate(
            row.intermediate_certificate_pem.encode()
        ),
        intermediate_key=intermediate_key,
        policy=SigningPolicy.from_dict(json.loads(row.policy)),
    )


def build_issuer(context: BuildContext, settings: Mapping[str, Any]) -> Issuer:
    """Registry factory for ``type = "private-ca"``: the CA of the inventory it names."""
    return context.private_ca(str(settings.get("ca") or settings["name"]))


def sign_crl(runtime: Runtime, name: str) -> bytes:
    """A fresh CRL for CA ``name`` listing every revoked serial; bumps the CRL number."""
    from certman.contracts.issuer import CRLRequest, RevokedEntry

    signer = load_private_ca(runtime, name)
    now = runtime.clock.now()
    next_update = runtime.config.duration("ca", "crl_next_update") or timedelta(days=7)
    with runtime.session() as session:
        authority = session.exec(select(Authority).where(Authority.name == name)).one()
        rows = session.exec(select(Revocation).where(Revocation.issuer == name)).all()
        entries = tuple(
            RevokedEntry(
                serial=int(r.serial, 16),
                revoked_at=_aware(r.revoked_at),
                reason=RevocationReason(r.reason),
            )
            for r in rows
        )
        authority.crl_number += 1
        response = signer.crl(
            CRLRequest(
                entries=entries, number=authority.crl_number, now=now, next_update=next_update
            )
        )
        session.add(authority)
        session.commit()
    return response.crl_pem


def _aware(value: datetime | None) -> datetime:
    assert value is not None
    return value
