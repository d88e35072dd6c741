"""`certman bulk-issue FILE`: many certificates from a CSV, with a progress bar."""

from pathlib import Path
from typing import Annotated

import typer

from certman.cli.context import handles_errors, state


def register(app: typer.Typer) -> None:
    app.command("bulk-issue")(bulk_issue)


@handles_errors
def bulk_issue(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns name,domains[,key_type,validity]; domains space-separated."
        ),
    ],
    issuer: Annotated[str | None, typer.Option(help="Issuer for every row.")] = None,
) -> None:
    """Issue many new certificates at once (each step committed per batch)."""
    from certman.service.bulk import issue_many, read_bulk_csv, validate_all
    from certman.service.leases import lease_for
    from certman.service.validity import default_validity

    rt = state(ctx).runtime()
    issuer = issuer or str(rt.config.get("defaults", "issuer"))
    default = default_validity(rt, issuer)
    rows = read_bulk_csv(rt.config, file, issuer=issuer, validity=default.validity)
    plan = validate_all(rt, rows)
    asked = [*plan.new, *plan.unfinished]
    if default.note and any(s.validity == default.validity for s in asked):
        typer.echo(f"note: rows without a validity get {default.note}.", err=True)
    with typer.progressbar(length=len(plan), label="issuing") as bar:
        report = issue_many(rt, plan, progress=bar.update, lease=lease_for(rt, "cli"))
    skipped = (
        f"; {len(report.skipped)} already issued by an earlier run were skipped"
        if report.skipped
        else ""
    )
    typer.echo(f"{len(report.issued)} certificates issued, {len(report.failed)} failed{skipped}.")
    for name, message in report.failed.items():
        typer.echo(f"error: {name}: {message}", err=True)
    if report.failed:
        raise typer.Exit(1)
