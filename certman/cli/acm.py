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
    from certman.aws.sync import sync_acm

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
    from certman.aws.clients import region_of
    from certman.aws.sync import forget_acm_arn
    from certman.errors import ValidationError
    from certman.service.deployment import deploy_certificate
    from certman.service.views import show_certificate

    rt = state(ctx).runtime()
    with rt.session() as session:
        view = show_certificate(session, name, rt.clock.now())
    chosen = target
    if chosen is None:
        acm_targets = [
            t for t in view["targets"] if rt.config.targets.get(t, {}).get("type") == "acm"
        ]
        if not acm_targets:
            raise ValidationError(
                f"Certificate {name!r} has no acm target; name one with --target "
                '(an [targets.NAME] with type = "acm").'
            )
        chosen = acm_targets[0]
    elif rt.config.targets.get(chosen, {}).get("type") != "acm":
        raise ValidationError(f"Target {chosen!r} is not an acm target.")
    old_arn = view["acm_arn"]
    deployer = rt.deployer(chosen)
    region = str(getattr(deployer, "region", "") or rt.aws.region)
    replaced = bool(old_arn) and not getattr(deployer, "exists", lambda _arn: True)(old_arn)
    if replaced:
        # Deleted outside certman: asking by hand is the request for a new ARN (rule 3).
        forget_acm_arn(rt, name, old_arn)
        typer.echo(f"{old_arn} no longer exists in ACM; importing under a new ARN.", err=True)
    deploy_certificate(rt, name, [chosen])
    with rt.session() as session:
        view = show_certificate(session, name, rt.clock.now())
    arn = view["acm_arn"]
    # The row keeps one region's ARN; a target in another region has its own.
    where = f"as {arn}" if arn and region_of(arn) == region else f"in {region}"
    typer.echo(f"{name}: revision {view['revision']} in ACM {where}.")
    if replaced and arn != old_arn:
        typer.echo(
            f"The ARN changed: point the listeners that used {old_arn} at the new one.", err=True
        )
