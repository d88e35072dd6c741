"""Issuers as an operator sees them: list, check (preflight), deactivate an ACME account."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from certman.contracts.issuer import PreflightResult, SupportsDeactivate, SupportsPreflight
from certman.errors import NotFoundError, ValidationError
from certman.inventory.tables import AcmeAccount
from certman.service.runtime import Runtime


def issuer_views(rt: Runtime) -> list[dict[str, Any]]:
    """Every configured [issuers.NAME] and every private CA, with ACME account states."""
    from certman.service.authorities import authority_names

    with rt.session() as session:
        accounts = {(a.issuer, a.directory): a for a in session.exec(select(AcmeAccount)).all()}
    views: list[dict[str, Any]] = []
    for name, table in sorted(rt.config.issuers.items()):
        kind = str(table.get("type", ""))
        view: dict[str, Any] = {"name": name, "type": kind, "source": str(rt.config.path)}
        if kind == "acme":
            directory = str(table.get("directory", ""))
            account = accounts.get((name, directory))
            view.update(
                directory=directory,
                challenge=str(table.get("challenge", "http-01")),
                account=account.status if account else "not registered",
                account_url=account.account_url if account else None,
            )
        views.append(view)
    for name in authority_names(rt):
        if name not in rt.config.issuers:
            views.append({"name": name, "type": "private-ca", "source": "inventory"})
    return views


def check_issuer(rt: Runtime, name: str) -> PreflightResult:
    """Run the issuer's own checks; building it already checks its configuration."""
    issuer = rt.issuer(name)
    if isinstance(issuer, SupportsPreflight):
        return issuer.preflight(rt.clock.now())
    return PreflightResult(ok=True, checks=(("issuer", True, f"{name} has no remote checks"),))


def deactivate_issuer(rt: Runtime, name: str) -> str:
    if name not in rt.config.issuers:
        raise NotFoundError(
            f"No [issuers.{name}] in {rt.config.path}; `certman issuer list` shows the issuers."
        )
    issuer = rt.issuer(name)
    if not isinstance(issuer, SupportsDeactivate):
        raise ValidationError(f"Issuer {name!r} has no CA account to deactivate.")
    return issuer.deactivate()
