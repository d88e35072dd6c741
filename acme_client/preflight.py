"""`certman issuer check` for ACME: directory, account, solver; it changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from certman.acme_client.problems import AccountUnknown

from certman.contracts.issuer import PreflightResult
from certman.errors import CertmanError

if TYPE_CHECKING:
    from certman.acme_client.issuer import AcmeIssuer


def run_checks(issuer: AcmeIssuer, now: datetime) -> PreflightResult:
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], str]) -> bool:
        try:
            checks.append((name, True, fn()))
            return True
        except CertmanError as e:
            checks.append((name, False, e.message))
            return False

    if check("directory", lambda: _directory(issuer)):
        check("account", lambda: _account(issuer))
    check("solver", issuer.solver.check)
    until = issuer.account.backoff_until()
    if until is not None and until > now:
        checks.append(("backoff", False, f"the server asked certman to wait until {until}"))
    return PreflightResult(ok=all(ok for _, ok, _ in checks), checks=tuple(checks))


def _directory(issuer: AcmeIssuer) -> str:
    info = issuer.client.directory_info()
    features = [
        "ARI" if info.renewal_info else "no ARI",
        "EAB required" if info.external_account_required else "no EAB required",
    ]
    if info.profiles:
        features.append("profiles " + ", ".join(info.profiles))
    issuer._profile()  # a configured profile the server does not offer fails here
    return f"{issuer.settings.directory} answers ({'; '.join(features)})"


def _account(issuer: AcmeIssuer) -> str:
    account = issuer.account
    if not account.load():
        if account.stored_status() == "deactivated":
            return "deactivated; the next issuance registers a new account"
        info = issuer.client.directory_info()
        if info.external_account_required and not issuer.settings.eab_kid:
            raise CertmanError(
                "the server requires External Account Binding but eab_kid is not set in "
                f"{issuer.settings.table}"
            )
        return "not registered yet; certman registers it on the first issuance"
    url = issuer.client.account_url
    try:
        status = issuer.client.account_status(reregister=False)
    except AccountUnknown:
        raise CertmanError(
            f"the server no longer knows account {url}; the next issuance registers it again"
        ) from None
    if status != "valid":
        raise CertmanError(f"account {url} is {status} at the server")
    return f"{url} is valid"
