"""`certman ca`: private certificate authorities."""

from pathlib import Path
from typing import Annotated

import typer

from certman.cli.context import emit_json, handles_errors, parse_duration_option, state

app = typer.Typer(help="Private certificate authorities.", no_args_is_help=True)


@app.command("create")
@handles_errors
def create(
    ctx: typer.Context,
    name: str,
    key_type: Annotated[
        str | None, typer.Option(help="CA key type [default: [ca] key_type].")
    ] = None,
    common_name: Annotated[str | None, typer.Option(help="Subject common name.")] = None,
    max_validity: Annotated[
        str | None, typer.Option(help="Longest leaf lifetime it signs [default: 397d].")
    ] = None,
    permitted_domain: Annotated[
        list[str] | None,
        typer.Option("--permitted-domain", help="Only sign names under this domain (repeat)."),
    ] = None,
    crl_url: Annotated[str | None, typer.Option(help="CRL distribution point for leaves.")] = None,
    allowed_key_type: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-key-type",
            help="Only sign leaves with this key type (repeat) [default: [ca] allowed_key_types, "
            "or every type].",
        ),
    ] = None,
    wildcards: Annotated[
        bool | None,
        typer.Option(
            "--wildcards/--no-wildcards",
            help="Sign wildcard names like *.example.com [default: [ca] allow_wildcards, yes].",
            show_default=False,
        ),
    ] = None,
    client_auth: Annotated[
        bool | None,
        typer.Option(
            "--client-auth/--no-client-auth",
            help="Leaves also get the clientAuth usage (mutual TLS) [default: [ca] client_auth, "
            "no].",
            show_default=False,
        ),
    ] = None,
    key_store: Annotated[
        str | None,
        typer.Option(
            help='Where the CA keys live: "sealed" (sealed by [kms], in the inventory) or '
            '"hsm" (generated in the [kms] PKCS#11 token, never extractable) '
            "[default: [ca] key_store, sealed].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a CA (root + intermediate); both keys are sealed before they are stored, or
    generated in an HSM with --key-store hsm."""
    from certman.models import KeyType
    from certman.service.authorities import AuthoritySpec, create_authority

    rt = state(ctx).runtime()
    spec = AuthoritySpec.from_config(
        rt.config,
        name,
        key_type=KeyType.parse(key_type, field="--key-type") if key_type is not None else None,
        common_name=common_name or f"certman {name} CA",
        max_validity=parse_duration_option(max_validity, "--max-validity"),
        permitted_domains=tuple(permitted_domain or ()),
        crl_url=crl_url,
        allowed_key_types=tuple(
            KeyType.parse(k, field="--allowed-key-type") for k in allowed_key_type or ()
        ),
        allow_wildcards=wildcards,
        client_auth=client_auth,
        key_store=key_store,
    )
    create_authority(rt, spec)
    where = ", keys in the HSM" if spec.key_store == "hsm" else ""
    typer.echo(f"CA {name} created (root + intermediate, {spec.key_type.value}{where}).")


@app.command("list")
@handles_errors
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the private CAs."""
    from certman.service.authority_views import authority_views

    views = authority_views(state(ctx).runtime())
    if as_json:
        emit_json(views)
        return
    for v in views:
        domains = ",".join(v["permitted_domains"]) or "any"
        typer.echo(
            f"{v['name']:16} {v['key_type']:9} intermediate until {v['intermediate_not_after']}  "
            f"max validity {v['max_validity']}  domains {domains}"
        )


@app.command("show")
@handles_errors
def show(
    ctx: typer.Context, name: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Show a CA, its policy and its certificates."""
    from certman.service.authority_views import authority_view

    view = authority_view(state(ctx).runtime(), name)
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        if key.endswith("_pem"):
            continue
        typer.echo(f"{key:26} {value}")


@app.command("crl")
@handles_errors
def crl(
    ctx: typer.Context,
    name: str,
    out: Annotated[Path, typer.Option(help="File to write the PEM CRL to.")],
) -> None:
    """Sign a CRL listing every revoked certificate of the CA, with its reason."""
    from certman.errors import ValidationError
    from certman.fileio import write_private
    from certman.service.authorities import get_authority, sign_crl

    get_authority(state(ctx).runtime(), name)
    if not out.parent.is_dir():
        raise ValidationError(f"The directory of --out ({out.parent}) does not exist.")
    pem = sign_crl(state(ctx).runtime(), name)
    write_private(out, pem, mode=0o644)
    typer.echo(f"wrote {out}")


@app.command("export")
@handles_errors
def export(
    ctx: typer.Context,
    name: str,
    out: Annotated[Path, typer.Option(help="File to write the PEM to.")],
    intermediate: Annotated[
        bool, typer.Option("--intermediate", help="The intermediate instead of the root.")
    ] = False,
    chain: Annotated[
        bool, typer.Option("--chain", help="The intermediate followed by the root.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write the CA's root certificate (the trust anchor to distribute), or its intermediate."""
    from certman.service.authority_views import export_authority_pem

    path = export_authority_pem(
        state(ctx).runtime(), name, out, intermediate=intermediate, chain=chain, force=force
    )
    typer.echo(f"wrote {path}")
