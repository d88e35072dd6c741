"""`certman audit`: the audit trail, each event chained to the one before it by an HMAC."""

# No `from __future__ import annotations` here: typer reads these signatures at start-up,
# and real annotations spare it an eval() per parameter on every `certman --help`.
from typing import Annotated

import typer

from certman.cli.context import emit_json, handles_errors, state

app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@app.command("list")
@handles_errors
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[
        int | None, typer.Option(help="Show the last N events [default: all].")
    ] = None,
) -> None:
    """List audit events, oldest first."""
    import json

    from sqlmodel import col, select

    from certman.errors import ValidationError
    from certman.inventory.tables import AuditEvent

    if limit is not None and limit < 1:
        raise ValidationError(
            f"--limit must be a positive number of events, not {limit}; leave it out to list all."
        )
    rt = state(ctx).runtime()
    with rt.session() as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq).desc())
        if limit is not None:
            # More than the database's 64-bit integers can hold is "all" too.
            query = query.limit(min(limit, 2**63 - 1))
        rows = list(reversed(session.exec(query).all()))
    events = [
        {
            "seq": r.seq,
            "at": r.at.isoformat().replace("+00:00", "Z") if r.at else None,
            "action": r.action,
            "subject": r.subject,
            "actor": r.actor,
            "details": json.loads(r.details),
            "hash": r.hash,
        }
        for r in rows
    ]
    if as_json:
        emit_json(events)
        return
    for e in events:
        typer.echo(f"{e['seq']:>6}  {e['at']}  {e['action']:20} {e['subject']:24} {e['actor']}")


@app.command("verify")
@handles_errors
def verify(
    ctx: typer.Context,
) -> None:
    """Check the HMAC chain and its anchored head: an edited or deleted event fails (exit 1)."""
    from certman.service.checks import verify_audit

    typer.echo(verify_audit(state(ctx).runtime()))
