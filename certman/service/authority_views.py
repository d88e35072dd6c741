"""What `certman ca list` and `certman ca show` report."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, func, select

from certman.durations import format_duration
from certman.inventory.tables import Authority, ManagedCertificate, Revocation
from certman.service.authorities import get_authority
from certman.service.runtime import Runtime


def _view(row: Authority) -> dict[str, Any]:
    from cryptography import x509

    from ca import SigningPolicy

    root = x509.load_pem_x509_certificate(row.root_certificate_pem.encode())
    inter = x509.load_pem_x509_certificate(row.intermediate_certificate_pem.encode())
    policy = SigningPolicy.from_dict(json.loads(row.policy))
    return {
        "name": row.name,
        "key_type": row.key_type,
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
