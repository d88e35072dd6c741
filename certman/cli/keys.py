"""`certman keys`: the master key that seals every private key."""

from typing import Annotated

import typer

from certman.cli.context import handles_errors, state

app = typer.Typer(help="Key sealing.", no_args_is_help=True)


@app.command("rotate")
@handles_errors
def rotate(
    ctx: typer.Context,
    to: Annotated[
        str | None,
        typer.Option(help="Move every sealed key to this wrapper: local, aws-kms or pkcs11."),
    ] = None,
) -> None:
    """Add a master key version and re-wrap every sealed key under it (or, with --to, move
    every sealed key to another key wrapper)."""
    from certman.service.rotation import move_keys, rotate_master_key

    rt = state(ctx).runtime()
    if to is not None:
        moved = move_keys(rt, to, setting="--to")
        current = rt.key_wrapper.wrapper_type
        typer.echo(f"{moved.keys_rewrapped} sealed keys re-sealed with {moved.to}.")
        if current == moved.to:
            typer.echo(f'[kms] type is already "{moved.to}": nothing else to do.')
            return
        typer.echo(
            f'Now set [kms] type = "{moved.to}" in {rt.config.path}. Until then certman '
            f"keeps sealing new keys with {current} (it opens both kinds); run this command "
            "again after the switch to move those too. Archived bundles stay sealed as they "
            f"were: keep the {current} key available to read them."
        )
        return
    report = rotate_master_key(rt)
    typer.echo(
        f"Master key version {report.new_version} is active; {report.keys_rewrapped} sealed keys "
        "re-wrapped; older versions are retired (kept only to read archived bundles)."
    )
