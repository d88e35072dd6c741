"""Certificate commands: issue, list, show, renew, revoke, export."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from certman.cli.context import emit_json, handles_errors, parse_duration_option, state

if TYPE_CHECKING:
    from certman.service.runtime import Runtime


def register(app: typer.Typer) -> None:
    app.command("issue")(issue)
    app.command("list")(list_)
    app.command("show")(show)
    app.command("renew")(renew)
    app.command("revoke")(revoke)
    app.command("export")(export)
    app.command("delete")(delete)


@handles_errors
def issue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the certificate in the inventory.")],
    domain: Annotated[
        list[str], typer.Option("--domain", "-d", help="A DNS name or IP address (repeat).")
    ],
    issuer: Annotated[str | None, typer.Option(help="Issuer: a CA or an [issuers.NAME].")] = None,
    key_type: Annotated[
        str | None, typer.Option(help="ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096.")
    ] = None,
    validity: Annotated[str | None, typer.Option(help="Lifetime, e.g. 90d.")] = None,
    renew_before: Annotated[
        str | None, typer.Option(help="Renew this long before expiry [default: at 2/3 of life].")
    ] = None,
    reuse_key: Annotated[bool, typer.Option(help="Keep the same key across renewals.")] = False,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Deploy to this target (repeat).")
    ] = None,
) -> None:
    """Issue a new certificate and track it."""
    from certman.models import KeyType
    from certman.service.lifecycle import IssueSpec, Lifecycle
    from certman.service.validity import default_validity

    rt = state(ctx).runtime()
    cfg = rt.config
    issuer = issuer or str(cfg.get("defaults", "issuer"))
    lifetime = parse_duration_option(validity, "--validity")
    note = None
    if lifetime is None:
        default = default_validity(rt, issuer)
        lifetime, note = default.validity, default.note
    spec = IssueSpec(
        name=name,
        domains=tuple(domain),
        issuer=issuer,
        key_type=KeyType.parse(key_type, field="--key-type")
        if key_type is not None
        else cfg.key_type("defaults", "key_type"),
        validity=lifetime,
        renew_before=parse_duration_option(renew_before, "--renew-before")
        or cfg.duration("defaults", "renew_before"),
        reuse_key=reuse_key or bool(cfg.get("defaults", "reuse_key")),
        targets=tuple(target or ()),
    )
    from certman.service.leases import lease_for

    lifecycle = Lifecycle(rt, lease=lease_for(rt, "cli"))
    outcome, planned = lifecycle.issue(spec)
    if not planned:
        typer.echo(f"Resuming the unfinished issuance of {name}.", err=True)
    if note:
        typer.echo(f"note: {note}; give --validity to choose another.", err=True)
    _print_done(rt, name, outcome.revision)


def _print_done(rt: "Runtime", name: str, revision: int) -> None:
    from certman.service.views import show_certificate

    with rt.session() as session:
        view = show_certificate(session, name, rt.clock.now())
    typer.echo(
        f"{name}: revision {revision} active, serial {view['serial']}, "
        f"expires {view['not_after']}, renewal due {view['renewal_due_at']}."
    )


@handles_errors
def list_(
    ctx: typer.Context,
    expiring: Annotated[
        str | None, typer.Option(help="Only those expiring within this duration, e.g. 30d.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="active, pending, failed, revoked or expired.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List certificates with their expiry, soonest first."""
    from certman.service.views import list_certificates

    window = parse_duration_option(expiring, "--expiring")
    rt = state(ctx).runtime()
    with rt.session() as session:
        rows = list_certificates(session, rt.clock.now(), expiring=window, status=status)
    if as_json:
        emit_json(rows)
        return
    _table(rows)


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        typer.echo("No certificates.")
        return
    headers = ["NAME", "STATUS", "ISSUER", "SOURCE", "REV", "NOT AFTER", "RENEWAL DUE", "DOMAINS"]
    with_arn = any(r.get("acm_arn") for r in rows)
    if with_arn:
        headers.append("ACM ARN")
    lines = [
        [
            r["name"],
            r["status"],
            r["issuer"],
            r["source"],
            str(r["revision"]),
            r["not_after"] or "-",
            r["renewal_due_at"] or "-",
            ",".join(r["domains"]),
        ]
        + ([r.get("acm_arn") or "-"] if with_arn else [])
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    for line in [headers, *lines]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        if r.get("drift"):
            typer.echo(f"drift: {r['name']}: {r['drift']}")


@handles_errors
def show(
    ctx: typer.Context,
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one certificate and its revisions."""
    from certman.service.views import show_certificate

    rt = state(ctx).runtime()
    with rt.session() as session:
        view = show_certificate(session, name, rt.clock.now())
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        if key == "revisions":
            continue
        typer.echo(
            f"{key:20} {value if not isinstance(value, list) else ', '.join(map(str, value))}"
        )
    typer.echo("revisions:")
    for rev in view["revisions"]:
        typer.echo(
            f"  {rev['revision']:>3}  {rev['state']:10} serial {rev['serial'] or '-'}  "
            f"not_after {rev['not_after'] or '-'}"
            + (f"  error: {rev['error']}" if rev["error"] else "")
        )


# How many due certificates are read at a time; `renew --due` goes on until none is left.
DUE_PAGE = 500


@handles_errors
def renew(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The certificate to renew.")] = None,
    due: Annotated[
        bool, typer.Option("--due", help="Renew every certificate that is due.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Renew even if not due yet.")] = False,
    dry_run: Annotated[bool, typer.Option(help="With --due: only list what would renew.")] = False,
) -> None:
    """Renew one certificate, or every one that is due (and finish interrupted ones)."""
    from certman.errors import CertmanError, ValidationError
    from certman.service.lifecycle import Lifecycle

    if due == (name is not None):
        raise ValidationError("Give either a certificate NAME or --due, not both and not neither.")
    if dry_run and not due:
        raise ValidationError("--dry-run goes with --due.")
    if force and due:
        raise ValidationError("--force goes with a NAME, not with --due.")
    from certman.scheduler.notify import alert_failure
    from certman.service.leases import CertificateBusy, lease_for

    rt = state(ctx).runtime()
    lifecycle = Lifecycle(rt, lease=lease_for(rt, "cli"))
    if name is not None:
        try:
            outcome = lifecycle.renew(name, force=force)
        except CertificateBusy:
            raise
        except CertmanError as error:
            alert_failure(rt, name, error)
            raise
        for note in outcome.notes:
            typer.echo(note, err=True)
        if outcome.message:
            typer.echo(f"{name}: {outcome.message}.")
        else:
            _print_done(rt, name, outcome.revision)
        return
    if not dry_run:  # a dry run changes nothing, the stored windows included
        from certman.service.renewal_info import refresh_renewal_windows

        refresh_renewal_windows(rt)  # RFC 9773: ask again where Retry-After has passed
    if dry_run:
        names = [n for page in lifecycle.due_pages(page_size=DUE_PAGE) for n in page]
        typer.echo("\n".join(f"would renew {n}" for n in names) or "Nothing is due.")
        return
    attempted = failed = 0
    for page in lifecycle.due_pages(page_size=DUE_PAGE):
        for each in page:
            attempted += 1
            try:
                outcome = lifecycle.renew(each)
                for note in outcome.notes:
                    typer.echo(note, err=True)
                if outcome.message:  # done meanwhile by a process that held it then
                    typer.echo(f"{each}: renewed by another process.")
                else:
                    typer.echo(f"{each}: revision {outcome.revision} {outcome.state.value}.")
            except CertificateBusy as busy:  # a running service has it: not a failure
                typer.echo(f"{each}: skipped; {busy.message}")
            except CertmanError as e:  # one failure never blocks the others
                failed += 1
                alert_failure(rt, each, e)
                typer.echo(f"error: {each}: {e.message}", err=True)
    if not attempted:
        typer.echo("Nothing is due.")
    if failed:
        typer.echo(f"{failed} of {attempted} renewals failed.", err=True)
        raise typer.Exit(1)


@handles_errors
def revoke(
    ctx: typer.Context,
    name: str,
    reason: Annotated[
        str,
        typer.Option(
            help="keyCompromise, superseded, cessationOfOperation, affiliationChanged, unspecified."
        ),
    ] = "unspecified",
) -> None:
    """Revoke a certificate (a private CA lists it in its next CRL).

    With keyCompromise, every unexpired revision certifying the same key is revoked too,
    and the key is never reused.
    """
    from certman.models import RevocationReason
    from certman.service.leases import held, lease_for
    from certman.service.revocation import revoke_certificate

    parsed = RevocationReason.parse(reason)
    rt = state(ctx).runtime()
    with held(rt, name, lease_for(rt, "cli")):  # a renewal in progress finishes first
        outcome = revoke_certificate(rt, name, parsed)
    for line in outcome.lines():
        typer.echo(line)


@handles_errors
def export(
    ctx: typer.Context,
    name: str,
    out: Annotated[Path, typer.Option(help="Directory to write the files to.")],
    format: Annotated[str, typer.Option(help="pem or pkcs12.")] = "pem",
    passphrase_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the passphrase: of the PKCS#12 file, or with "
            "pem the one that encrypts privkey.pem."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Export the certificate, chain and private key (privkey.pem is written 0600)."""
    from certman.errors import ValidationError
    from certman.service.export import ExportSpec, export_certificate

    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise ValidationError(
                f"The environment variable {passphrase_env} named by --passphrase-env is not set."
            )
        passphrase = value.encode()
    written = export_certificate(
        state(ctx).runtime(),
        ExportSpec(name=name, out=out, format=format, passphrase=passphrase, force=force),
    )
    for path in written:
        typer.echo(f"wrote {path}")


@handles_errors
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(help="Delete even while deployed to targets or with a revision in flight."),
    ] = False,
) -> None:
    """Stop tracking a certificate: inventory rows go; archived bundles and audit events stay.

    It is not revoked (`certman revoke NAME` first, if it must stop being trusted).
    """
    from certman.service.deletion import delete_certificate, deletion_refusal
    from certman.service.leases import held, lease_for

    rt = state(ctx).runtime()
    deletion_refusal(rt, name, force=force)
    if not yes:
        typer.confirm(
            f"Stop tracking {name}? It will not be renewed any more (it is not revoked).",
            abort=True,
        )
    with held(rt, name, lease_for(rt, "cli")):  # never under a renewal in progress
        deleted = delete_certificate(rt, name, force=force)
    where = f"; it may still be deployed to {', '.join(deleted.targets)}" if deleted.targets else ""
    typer.echo(
        f"{name} is no longer tracked ({deleted.revisions} revisions removed from the inventory); "
        f"its {deleted.archived} archived bundles and its audit events stay{where}."
    )
