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
    from certman.service.validity import default_validity

    rt = state(ctx).runtime()
    issuer = issuer or str(rt.config.get("defaults", "issuer"))
    default = default_validity(rt, issuer)
    rows = read_bulk_csv(rt.config, file, issuer=issuer, validity=default.validity)
    specs = validate_all(rt, rows)
    if default.note and any(s.validity == default.validity for s in specs):
        typer.echo(f"note: rows without a validity get {default.note}.", err=True)
    with typer.progressbar(length=len(specs), label="issuing") as bar:
        report = issue_many(rt, specs, progress=bar.update, prevalidated=True)
    typer.echo(f"{len(report.issued)} certificates issued, {len(report.failed)} failed.")
    for name, message in report.failed.items():
        typer.echo(f"error: {name}: {message}", err=True)
    if report.failed:
        raise typer.Exit(1)
