"""`certman keys`: the master key that seals every private key."""

import typer

from certman.cli.context import handles_errors, state

app = typer.Typer(help="Key sealing.", no_args_is_help=True)


@app.command("rotate")
@handles_errors
def rotate(
    ctx: typer.Context,
) -> None:
    """Add a master key version and re-wrap every sealed key under it."""
    from certman.service.rotation import rotate_master_key

    report = rotate_master_key(state(ctx).runtime())
    typer.echo(
        f"Master key version {report.new_version} is active; {report.keys_rewrapped} sealed keys "
        "re-wrapped; older versions are retired (kept only to read archived bundles)."
    )
