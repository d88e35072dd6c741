"""`certman ca create` policy flags and `[ca]` keys: shown by `ca show`, enforced at signing."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.cli.outcomes import assert_error
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


def ca_view(cli: Cli, name: str) -> dict[str, object]:
    return json.loads(cli.ok("ca", "show", name, "--json").stdout)  # type: ignore[no-any-return]


def leaf_usages(cli: Cli, name: str, out: Path) -> list[x509.ObjectIdentifier]:
    cli.ok("export", name, "--out", str(out))
    leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    return list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_policy_flags_are_shown_and_enforced_at_signing(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    cli.ok(
        "ca", "create", "mtls",
        "--client-auth", "--no-wildcards",
        "--allowed-key-type", "ec-p384", "--allowed-key-type", "rsa-2048",
    )  # fmt: skip
    view = ca_view(cli, "mtls")
    assert view["allowed_key_types"] == ["ec-p384", "rsa-2048"]
    assert view["allow_wildcards"] is False
    assert view["client_auth"] is True
    shown = cli.ok("ca", "show", "mtls").stdout
    assert "allowed_key_types" in shown and "ec-p384" in shown

    before = snapshot_home(initialised_home)
    message = assert_error(
        cli("issue", "wild", "-d", "*.example.com", "--issuer", "mtls", "--key-type", "ec-p384"),
        2,
    )
    assert "'*.example.com'" in message and "'mtls'" in message
    message = assert_error(cli("issue", "p256", "-d", "a.example.com", "--issuer", "mtls"), 2)
    assert "ec-p256" in message and "ec-p384, rsa-2048" in message
    assert_unchanged(before, initialised_home)

    cli.ok("issue", "client", "-d", "a.example.com", "--issuer", "mtls", "--key-type", "ec-p384")
    assert leaf_usages(cli, "client", tmp_path / "out") == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]


def test_a_ca_without_flags_signs_every_key_type_and_wildcards_for_servers_only(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    view = ca_view(cli, "default")
    assert view["allowed_key_types"] == ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
    assert view["allow_wildcards"] is True
    assert view["client_auth"] is False
    cli.ok("issue", "wild", "-d", "*.example.com")
    assert leaf_usages(cli, "wild", tmp_path / "out") == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_ca_section_keys_set_the_policy_of_new_cas_and_flags_override_them(
    initialised_home: Path, cli: Cli
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text(
        config.read_text()
        + '\n[ca]\nclient_auth = true\nallow_wildcards = false\nallowed_key_types = ["ec-p384"]\n'
    )
    cli.ok("ca", "create", "fromconfig")
    view = ca_view(cli, "fromconfig")
    assert (view["client_auth"], view["allow_wildcards"], view["allowed_key_types"]) == (
        True,
        False,
        ["ec-p384"],
    )
    cli.ok("ca", "create", "overridden", "--no-client-auth", "--wildcards")
    view = ca_view(cli, "overridden")
    assert (view["client_auth"], view["allow_wildcards"]) == (False, True)


def test_ca_create_refuses_an_unknown_allowed_key_type_and_creates_nothing(
    initialised_home: Path, cli: Cli
) -> None:
    before = snapshot_home(initialised_home)
    message = assert_error(cli("ca", "create", "x", "--allowed-key-type", "dsa-1024"), 2)
    assert "--allowed-key-type" in message and "dsa-1024" in message
    assert_unchanged(before, initialised_home)


def test_an_unknown_key_type_in_ca_allowed_key_types_names_the_key_and_the_file(
    initialised_home: Path, cli: Cli
) -> None:
    config = initialised_home / "certman.toml"
    config.write_text(config.read_text() + '\n[ca]\nallowed_key_types = ["ec-p999"]\n')
    before = snapshot_home(initialised_home)
    message = assert_error(cli("ca", "create", "x"), 2)
    assert "ca.allowed_key_types" in message and str(config) in message
    assert_unchanged(before, initialised_home)
