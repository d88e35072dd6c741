"""`certman deploy NAME` and `certman deploy plan NAME`: staged, verified rollouts."""

from typing import Annotated

import typer

from certman.cli.context import emit_json, handles_errors, state


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)


_STRATEGY_LINES = {
    "reimport": 'acm_strategy "reimport": re-imported to the same ARN in its wave; every '
    "listener naming that ARN serves the new revision from then on.",
    "new-arn": 'acm_strategy "new-arn": imported under a new ARN in its wave; the listeners '
    "move to it wave by wave, each verified, and the old ARN is deleted once no listener "
    "uses it.",
}


@handles_errors
def deploy(
    ctx: typer.Context,
    words: Annotated[
        list[str], typer.Argument(help="NAME to deploy, or `plan NAME` to show what would change.")
    ],
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Only this target (repeat).")
    ] = None,
    canary: Annotated[
        str | None, typer.Option(help="The unit (listener ARN or target) to switch first.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With plan: print JSON.")] = False,
) -> None:
    """Deploy a certificate's active revision: canary first, verify, then waves; roll back
    every switched target when a verify fails."""
    from certman.errors import CertmanError, InputError, ValidationError
    from certman.service.deployment import deploy_certificate, deploy_plan

    rt = state(ctx).runtime()
    if words[0] == "plan":
        if len(words) != 2:
            raise ValidationError("Usage: certman deploy plan NAME [--target T] [--json].")
        plan = deploy_plan(rt, words[1], target, canary)
        if as_json:
            emit_json(plan)
            return
        typer.echo(f"{plan['name']} revision {plan['revision']}:")
        for step in plan["steps"]:
            if step["type"] == "acm":
                typer.echo(f"  {step['target']}: {_STRATEGY_LINES[step['acm_strategy']]}")
        for step in plan["steps"]:
            where = f"{step['target']} ({step['unit']})" if step["unit"] else step["target"]
            current = step["current_serial"] or "nothing"
            if step["current_not_after"]:
                current += f" (until {step['current_not_after']})"
            typer.echo(
                f"  wave {step['wave']}: {where} [{step['type']}]: {current} -> "
                f"{step['new_serial']} (until {step['new_not_after']}); {step['change']}"
            )
        return
    if len(words) != 1:
        raise ValidationError("Usage: certman deploy NAME [--target T] [--canary UNIT].")
    if as_json:
        raise ValidationError("--json goes with `certman deploy plan NAME`.")
    try:
        targets, notes = deploy_certificate(rt, words[0], target, canary)
    except InputError:
        raise  # refused before anything was switched: nothing to alert about
    except CertmanError as error:
        from certman.scheduler.notify import alert_failure

        alert_failure(rt, words[0], error, key=f"deploy:{rt.clock.now().isoformat()}")
        raise
    typer.echo(f"{words[0]}: deployed to {', '.join(targets)} and verified.")
    for note in notes:
        typer.echo(f"  {note}")
