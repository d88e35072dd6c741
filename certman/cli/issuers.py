"""`certman issuer`: list issuers, check that one can issue, deactivate an ACME account."""

# No `from __future__ import annotations` in CLI modules: typer reads these signatures at
# start-up (see certman/cli/main.py).
from typing import Annotated

import typer

from certman.cli.context import emit_json, handles_errors, state

app = typer.Typer(help="Issuers: private CAs and ACME servers.", no_args_is_help=True)


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the configured issuers and private CAs (ACME: directory and account state)."""
    from certman.service.issuers import issuer_views

    views = issuer_views(state(ctx).runtime())
    if as_json:
        emit_json(views)
        return
    if not views:
        typer.echo("No issuers; run `certman init` or add an [issuers.NAME] table.")
        return
    for v in views:
        detail = (
            f"{v['directory']}  {v['challenge']}  account {v['account']}"
            if v["type"] == "acme"
            else v["source"]
        )
        typer.echo(f"{v['name']:16} {v['type']:11} {detail}")


@app.command("check")
@handles_errors
def check(ctx: typer.Context, name: str) -> None:
    """Check an issuer: ACME directory reachable, account valid, challenge solver ready."""
    from certman.service.issuers import check_issuer

    result = check_issuer(state(ctx).runtime(), name)
    for area, ok, message in result.checks:
        typer.echo(f"[{'ok  ' if ok else 'FAIL'}] {area:10} {message}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("deactivate")
@handles_errors
def deactivate(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Deactivate the issuer's ACME account at the CA (irreversible; the next issue registers
    a new account with a new key)."""
    from certman.service.issuers import deactivate_issuer

    if not yes:
        typer.confirm(
            f"Deactivate the ACME account of issuer {name}? The CA refuses it from then on.",
            abort=True,
        )
    url = deactivate_issuer(state(ctx).runtime(), name)
    typer.echo(f"{name}: account {url} deactivated; the next issuance registers a new one.")
