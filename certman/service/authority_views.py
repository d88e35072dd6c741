"""What `certman ca list`, `ca show` and `ca export` give out: public facts and certificates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from certman.durations import format_duration
from certman.errors import AlreadyExistsError, ValidationError
from certman.inventory.tables import Authority, ManagedCertificate, Revocation
from certman.service.authorities import get_authority
from certman.service.runtime import Runtime


def _view(row: Authority) -> dict[str, Any]:
    from cryptography import x509

    from certman.ca import SigningPolicy

    root = x509.load_pem_x509_certificate(row.root_certificate_pem.encode())
    inter = x509.load_pem_x509_certificate(row.intermediate_certificate_pem.encode())
    policy = SigningPolicy.from_dict(json.loads(row.policy))
    from certman.service.ca_keys import key_store_of

    store = key_store_of(row)
    return {
        "name": row.name,
        "key_type": row.key_type,
        "key_store": store,
        "intermediate_key_uri": (
            json.loads(row.intermediate_sealed_key)["key_id"] if store == "hsm" else None
        ),
        "common_name": row.common_name,
        "root_subject": root.subject.rfc4514_string(),
        "root_not_after": root.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "intermediate_subject": inter.subject.rfc4514_string(),
        "intermediate_not_after": inter.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "max_validity": format_duration(policy.max_validity),
        "permitted_domains": list(policy.permitted_domains),
        # the policy it enforces when signing leaves
        "allowed_key_types": [k.value for k in policy.allowed_key_types],
        "allow_wildcards": policy.allow_wildcards,
        "allow_ip": policy.allow_ip,
        "client_auth": policy.client_auth,
        "crl_url": policy.crl_url,
        "crl_number": row.crl_number,
        "root_certificate_pem": row.root_certificate_pem,
        "intermediate_certificate_pem": row.intermediate_certificate_pem,
    }


def authority_views(rt: Runtime) -> list[dict[str, Any]]:
    with rt.session() as session:
        rows = session.exec(select(Authority).order_by(col(Authority.name))).all()
    return [_view(r) for r in rows]


def authority_view(rt: Runtime, name: str) -> dict[str, Any]:
    view = _view(get_authority(rt, name))
    with rt.session() as session:
        view["certificates"] = session.exec(
            select(func.count())
            .select_from(ManagedCertificate)
            .where(ManagedCertificate.issuer == name)
        ).one()
        view["revoked"] = session.exec(
            select(func.count()).select_from(Revocation).where(Revocation.issuer == name)
        ).one()
    return view


def export_authority_pem(
    rt: Runtime, name: str, out: Path, *, intermediate: bool, chain: bool, force: bool
) -> Path:
    """Write the root (default), the intermediate, or the chain (intermediate + root) as PEM.

    Public certificates only (0644); an existing file is kept unless ``force``.
    """
    from certman.fileio import write_private
    from certman.inventory.audit import append_event

    if intermediate and chain:
        raise ValidationError("Give --intermediate or --chain, not both.")
    row = get_authority(rt, name)
    if out.is_dir():
        raise ValidationError(f"--out {out} is a directory; give the path of the file to write.")
    if not out.parent.is_dir():
        raise ValidationError(f"The directory of --out ({out.parent}) does not exist.")
    if out.exists() and not force:
        raise AlreadyExistsError(f"{out} already exists; pass --force to overwrite it.")
    what = "chain" if chain else "intermediate" if intermediate else "root"
    pem = {
        "root": row.root_certificate_pem,
        "intermediate": row.intermediate_certificate_pem,
        "chain": row.intermediate_certificate_pem + row.root_certificate_pem,
    }[what]
    write_private(out, pem.encode(), mode=0o644)
    with rt.session() as session:
        append_event(session, rt.clock.now(), "ca.export", name, certificate=what, out=str(out))
        session.commit()
    return out
