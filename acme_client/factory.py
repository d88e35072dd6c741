"""build_issuer: an AcmeIssuer from an [issuers.NAME] table (called by the backend registry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certman.acme_client.account import Account
from certman.acme_client.client import AcmeClient
from certman.acme_client.issuer import AcmeIssuer, CheckableSolver
from certman.acme_client.problems import Where
from certman.acme_client.settings import AcmeSettings, parse_settings

if TYPE_CHECKING:
    from certman.service.runtime import Runtime  # the core passes itself in


def build_issuer(runtime: Runtime, settings: Mapping[str, Any]) -> AcmeIssuer:
    """Check the table (unknown keys name issuers.NAME.key and the file) and wire the parts."""
    parsed = parse_settings(settings, config_path=runtime.config.path, home=runtime.config.home)
    where = Where(
        issuer=parsed.name,
        directory=parsed.directory,
        config_path=str(runtime.config.path),
        now=runtime.clock.now,
    )
    client = AcmeClient(where, verify=parsed.verify)
    return AcmeIssuer(
        runtime=runtime,
        settings=parsed,
        client=client,
        account=Account(runtime, parsed, client),
        solver=build_solver(runtime, parsed),
    )


def build_solver(runtime: Runtime, settings: AcmeSettings) -> CheckableSolver:
    from certman.acme_client.solvers import dns01, http01

    timeout = settings.propagation_timeout.total_seconds()
    if settings.challenge == "http-01":
        if settings.http_mode == "webroot":
            assert settings.webroot is not None
            return http01.WebrootSolver(webroot=settings.webroot, setting=settings.table)
        return http01.StandaloneSolver(
            host=settings.http_host, port=settings.http_port, setting=settings.table
        )
    if settings.dns_provider == "exec":
        assert settings.dns_hook is not None
        return dns01.ExecHookSolver(hook=settings.dns_hook, timeout=timeout, setting=settings.table)
    from certman.aws.route53 import route53_zone

    zone = route53_zone(runtime.aws, hosted_zone_id=settings.hosted_zone_id, setting=settings.table)
    return dns01.DnsZoneSolver(zone=zone, timeout=timeout)
