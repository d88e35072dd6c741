"""`certman acm`: sync the region's ACM certificates, import by hand."""

from typing import Annotated

import typer

from certman.cli.context import handles_errors, state

app = typer.Typer(help="AWS Certificate Manager.", no_args_is_help=True)


@app.command("sync")
@handles_errors
def sync(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option(help="Region [default: [aws] region].")] = None,
) -> None:
    """Read every ACM certificate of the region into the inventory; flag drift."""
    from certman.service.acm_sync import sync_acm

    report = sync_acm(state(ctx).runtime(), region, setting="--region")
    typer.echo(f"{len(report.imported)} new, {len(report.updated)} updated.")
    for name, message in sorted(report.drift.items()):
        typer.echo(f"drift: {name}: {message}")


@app.command("import")
@handles_errors
def import_(
    ctx: typer.Context,
    name: str,
    target: Annotated[
        str | None, typer.Option(help="An acm target [default: the certificate's own].")
    ] = None,
) -> None:
    """Import (or re-import to its ARN) a certificate's active revision into ACM; one whose
    ARN was deleted outside certman is imported under a new ARN."""
    from certman.service.deployment import import_to_acm

    done = import_to_acm(
        state(ctx).runtime(), name, target, notice=lambda message: typer.echo(message, err=True)
    )
    typer.echo(f"{name}: revision {done.revision} in ACM {done.where}.")
    if done.replaced_arn:
        typer.echo(
            f"The ARN changed: point the listeners that used {done.replaced_arn} at the new one.",
            err=True,
        )
