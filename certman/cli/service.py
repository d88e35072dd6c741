"""`certman serve` and `certman simulate`."""

from typing import Annotated

import typer

from certman.cli.context import emit_json, handles_errors, state


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("simulate")(simulate)


@handles_errors
def serve(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="Run one reconcile tick and exit.")] = False,
) -> None:
    """Run the renewal service: renew on time, notify, serve /healthz and /metrics."""
    import logging

    from certman.redact import RedactingFormatter
    from certman.scheduler.service import Service

    rt = state(ctx).runtime()
    # [logging] level (default info): one line per renewal, failure and notice batch.
    level = str(rt.config.get("logging", "level")).upper()
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("apscheduler").setLevel(max(logging.getLogger().level, logging.ERROR))
    service = Service(rt, debug=state(ctx).debug)
    if once:
        report = service.once()
        typer.echo(
            f"{len(report.renewed)} renewed, {len(report.failed)} failed, "
            f"{report.notified} notifications sent."
        )
        for name, message in report.failed.items():
            typer.echo(f"error: {name}: {message}", err=True)
        if report.failed:
            raise typer.Exit(1)
        return
    raise typer.Exit(service.run())


@handles_errors
def simulate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How many days ahead to simulate.")] = 400,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay the renewal service over the coming days on a copy of the inventory."""
    from certman.durations import MAX_DURATION
    from certman.errors import ValidationError
    from certman.scheduler.simulate import simulate as run_simulation

    if days <= 0:
        raise ValidationError("--days must be a positive number of days.")
    if days > MAX_DURATION.days:
        raise ValidationError(
            f"--days {days} is more than certman simulates; give at most {MAX_DURATION.days} "
            "(100 years)."
        )
    result = run_simulation(state(ctx).runtime(), days=days)
    if as_json:
        emit_json(result)
        return
    for cert in result["certificates"]:
        status = f"LAPSES {cert['lapses_at']}" if cert["lapsed"] else "ok"
        typer.echo(f"{cert['name']:24} {len(cert['renewals']):3} renewals  {status}")
        if cert["lapsed"] and cert["reason"]:
            typer.echo(f"{'':24} {cert['reason']}")
    typer.echo(
        f"{result['lapsed']} of {len(result['certificates'])} certificates would lapse "
        f"in the next {days} days."
    )
