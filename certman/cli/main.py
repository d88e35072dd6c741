"""The `certman` application: global options and the command tree."""

# No `from __future__ import annotations` here: typer reads these signatures at start-up,
# and real annotations spare it an eval() per parameter on every `certman --help`.
from typing import Annotated

import typer

from certman.cli import acm, audit, bulk, ca, certs, deploy, issuers, keys, maintenance, service
from certman.cli.context import CliState

app = typer.Typer(
    name="certman",
    help="Certificate lifecycle manager: private CA and ACME issuance, sealed keys, "
    "encrypted archives, expiry tracking and renewal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from certman import __version__

        typer.echo(f"certman {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option("--home", envvar="CERTMAN_HOME", help="Home directory [default: ~/.certman]."),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", envvar="CERTMAN_CONFIG", help="Config file [default: HOME/certman.toml]."
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="CERTMAN_DEBUG", help="Show tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = CliState(home=home, config=config, debug=debug)


maintenance.register(app)
certs.register(app)
bulk.register(app)
deploy.register(app)
service.register(app)
app.add_typer(ca.app, name="ca")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(maintenance.archive_app, name="archive")
app.add_typer(issuers.app, name="issuer")
app.add_typer(acm.app, name="acm")


def run() -> None:
    app()
