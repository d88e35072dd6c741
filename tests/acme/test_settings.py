"""The [issuers.NAME] table of an ACME issuer: exact keys, defaults, and errors naming the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from certman.acme_client.settings import parse_settings

from certman.errors import ConfigError
from certman.models import KeyType
from tests.conftest import Cli

CONFIG = Path("/etc/certman/certman.toml")


def parse(**keys: Any) -> Any:
    table = {"type": "acme", "directory": "https://acme.test/dir", "name": "le", **keys}
    return parse_settings(table, config_path=CONFIG, home=Path("/home/certman"))


def test_defaults_are_the_documented_ones() -> None:
    settings = parse()
    assert settings.account_key_type is KeyType.EC_P256
    assert settings.challenge == "http-01" and settings.http_mode == "standalone"
    assert settings.http_address == "0.0.0.0:80"
    assert settings.propagation_timeout == timedelta(seconds=120)
    assert settings.dns_provider == "route53"
    assert settings.email is None and settings.ca_bundle is None and settings.profile is None


def test_an_unknown_key_names_issuers_name_key_and_the_file() -> None:
    with pytest.raises(ConfigError) as error:
        parse(http_port="80")
    assert f"issuers.le.http_port in {CONFIG}" in error.value.message
    assert "http_address" in error.value.message  # the known keys are listed


def test_an_unknown_key_through_the_cli_exits_2(cli: Cli, initialised_home: Path) -> None:
    config = initialised_home / "certman.toml"
    config.write_text(
        config.read_text()
        + '\n[issuers.le]\ntype = "acme"\ndirectory = "https://acme.test/dir"\nemial = "x"\n'
    )
    result = cli("issuer", "check", "le")
    assert result.exit_code == 2
    assert f"issuers.le.emial in {config}" in result.stderr


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"directory": ""}, "issuers.le.directory"),
        ({"directory": "http://acme.test/dir"}, "starts with https://"),
        ({"challenge": "tls-alpn-01"}, "use one of: http-01, dns-01"),
        ({"http_mode": "proxy"}, "issuers.le.http_mode"),
        ({"http_mode": "webroot"}, "issuers.le.webroot"),
        ({"http_address": "80"}, "HOST:PORT"),
        ({"challenge": "dns-01", "dns_provider": "exec"}, "issuers.le.dns_hook"),
        ({"challenge": "dns-01", "dns_provider": "exec", "dns_hook": "/nonexistent"}, "executable"),
        ({"eab_kid": "kid-1"}, "issuers.le.eab_hmac_env"),
        ({"account_key_type": "ed25519"}, "issuers.le.account_key_type"),
        ({"propagation_timeout": "soon"}, "issuers.le.propagation_timeout"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "issuers.le.ca_bundle"),
        ({"email": 42}, "must be a string"),
    ],
)
def test_bad_values_name_the_key(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        parse(**keys)


def test_relative_paths_are_relative_to_the_home(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    table = {
        "type": "acme",
        "directory": "https://acme.test/dir",
        "name": "le",
        "http_mode": "webroot",
        "webroot": "www",
    }
    settings = parse_settings(table, config_path=CONFIG, home=tmp_path)
    assert settings.webroot == tmp_path / "www"
