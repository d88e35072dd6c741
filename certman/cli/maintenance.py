"""Home-level commands: init, doctor, and `certman archive verify`."""

# No `from __future__ import annotations` here: typer reads these signatures at start-up,
# and real annotations spare it an eval() per parameter on every `certman --help`.
from pathlib import Path
from typing import Annotated

import typer

from certman.cli.context import handles_errors, state

archive_app = typer.Typer(help="The encrypted archive of issued bundles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("doctor")(doctor)


@handles_errors
def init(
    ctx: typer.Context,
    ca_key_type: Annotated[
        str | None, typer.Option(help="Key type of the default CA [default: ec-p256].")
    ] = None,
) -> None:
    """Create the home: config, master key, database, archive folder and the default CA."""
    from certman.models import KeyType
    from certman.service.home import init_home

    key_type = (
        KeyType.parse(ca_key_type, field="--ca-key-type") if ca_key_type is not None else None
    )
    config = state(ctx).load_config(creating=True)
    report = init_home(config, ca_key_type=key_type)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if not report.changed:
        typer.echo(f"Nothing to do: {config.home} is already initialised.")
        return
    for item in report.created:
        typer.echo(f"created {item}")
    for item in report.present:
        typer.echo(f"kept    {item}")


def _print_report(report: object) -> None:
    from certman.service.checks import CheckReport

    assert isinstance(report, CheckReport)
    for check in report.checks:
        mark = "ok  " if check.ok and not check.warning else ("warn" if check.ok else "FAIL")
        typer.echo(f"[{mark}] {check.area:14} {check.message}")


@handles_errors
def doctor(
    ctx: typer.Context,
) -> None:
    """Check config, database, keys, CAs, archive, audit chain and certificates."""
    from certman.service.checks import run_doctor

    report = run_doctor(state(ctx).runtime())
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@archive_app.command("verify")
@handles_errors
def archive_verify(
    ctx: typer.Context,
) -> None:
    """Check that every archived bundle is present, intact and readable."""
    from certman.service.checks import verify_archive

    report = verify_archive(state(ctx).runtime())
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@archive_app.command("get")
@handles_errors
def archive_get(
    ctx: typer.Context,
    name: str,
    out: Annotated[Path, typer.Option(help="Directory to write the files to.")],
    revision: Annotated[
        int | None,
        # max: the database's 64-bit integer; beyond it SQLite raises instead of finding none.
        typer.Option(help="The revision [default: the active one].", min=1, max=2**63 - 1),
    ] = None,
    with_key: Annotated[
        bool, typer.Option("--with-key", help="Also write privkey.pem (0600), unsealed.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Restore cert.pem, chain.pem and fullchain.pem of a revision from its archived bundle."""
    from certman.service.export import RestoreSpec, restore_from_archive

    written = restore_from_archive(
        state(ctx).runtime(),
        RestoreSpec(name=name, out=out, revision=revision, with_key=with_key, force=force),
    )
    for path in written:
        typer.echo(f"wrote {path}")
