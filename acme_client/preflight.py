"""`certman issuer check` for ACME: directory, account, solver; it changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from certman.acme_client.problems import AccountUnknown
from certman.acme_client.profiles import chosen_profile
from certman.acme_client.settings import AcmeSettings
from certman.acme_client.solvers.contract import CheckableSolver

from certman.contracts.issuer import PreflightResult
from certman.errors import CertmanError

if TYPE_CHECKING:
    from certman.acme_client.account import Account
    from certman.acme_client.client import AcmeClient


def run_checks(
    *,
    client: AcmeClient,
    settings: AcmeSettings,
    account: Account,
    solver: CheckableSolver,
    now: datetime,
) -> PreflightResult:
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], str]) -> bool:
        try:
            checks.append((name, True, fn()))
            return True
        except CertmanError as e:
            checks.append((name, False, e.message))
            return False

    if check("directory", lambda: _directory(client, settings)):
        check("account", lambda: _account(client, settings, account))
    check("solver", solver.check)
    until = account.backoff_until()
    if until is not None and until > now:
        checks.append(("backoff", False, f"the server asked certman to wait until {until}"))
    return PreflightResult(ok=all(ok for _, ok, _ in checks), checks=tuple(checks))


def _directory(client: AcmeClient, settings: AcmeSettings) -> str:
    info = client.directory_info()
    features = [
        "ARI" if info.renewal_info else "no ARI",
        "EAB required" if info.external_account_required else "no EAB required",
    ]
    if info.profiles:
        features.append("profiles " + ", ".join(info.profiles))
    chosen_profile(info, settings)  # a configured profile the server does not offer fails here
    return f"{settings.directory} answers ({'; '.join(features)})"


def _account(client: AcmeClient, settings: AcmeSettings, account: Account) -> str:
    if not account.load():
        if account.stored_status() == "deactivated":
            return "deactivated; the next issuance registers a new account"
        info = client.directory_info()
        if info.external_account_required and not settings.eab_kid:
            raise CertmanError(
                "the server requires External Account Binding but eab_kid is not set in "
                f"{settings.table}"
            )
        return "not registered yet; certman registers it on the first issuance"
    url = client.account_url
    try:
        status = client.account_status(reregister=False)
    except AccountUnknown:
        raise CertmanError(
            f"the server no longer knows account {url}; the next issuance registers it again"
        ) from None
    if status != "valid":
        raise CertmanError(f"account {url} is {status} at the server")
    return f"{url} is valid"
