"""Configuration: defaults for every key, and errors that name the key and the file."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from certman.config import (
    NAMED_SECTIONS,
    SCHEMA,
    Config,
    load_config,
    parse_config_text,
    resolve_config_path,
    resolve_home,
)
from certman.errors import ConfigError
from certman.models import KeyType
from certman.service.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config.example.toml"


def load_config_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "certman.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(tmp_path, path)


def refusal(tmp_path: Path, text: str) -> str:
    path = tmp_path / "certman.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, path)
    return info.value.message


def test_without_a_file_every_key_has_its_default(tmp_path: Path) -> None:
    config = load_config(tmp_path, tmp_path / "certman.toml")
    assert not config.file_exists
    for section, keys in SCHEMA.items():
        assert dict(config.sections[section]) == keys
    assert config.issuers == {}
    assert config.targets == {}


def test_default_paths_are_inside_the_home(tmp_path: Path) -> None:
    config = load_config(tmp_path, tmp_path / "certman.toml")
    assert config.database_url == f"sqlite:///{tmp_path / 'certman.db'}"
    assert config.master_key_path == tmp_path / "master.key"
    assert config.archive_path == tmp_path / "archive"


def test_default_durations_and_key_types_parse(tmp_path: Path) -> None:
    config = load_config(tmp_path, tmp_path / "certman.toml")
    assert config.duration("defaults", "validity") == timedelta(days=90)
    assert config.duration("defaults", "renew_before") is None
    assert config.duration("ca", "max_validity") == timedelta(days=397)
    assert config.key_type("defaults", "key_type") is KeyType.EC_P256


def test_a_file_with_one_section_keeps_every_other_default(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, '[defaults]\nkey_type = "ec-p384"\n')
    assert config.file_exists
    assert config.key_type("defaults", "key_type") is KeyType.EC_P384
    assert config.get("defaults", "validity") == "90d"
    for section in SCHEMA.keys() - {"defaults"}:
        assert dict(config.sections[section]) == SCHEMA[section]


def test_an_empty_file_means_all_defaults(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, "")
    for section, keys in SCHEMA.items():
        assert dict(config.sections[section]) == keys


def test_relative_paths_are_relative_to_the_home_and_absolute_ones_kept(tmp_path: Path) -> None:
    config = load_config_text(
        tmp_path, '[kms]\nmaster_key_file = "keys/m.key"\n[archive]\npath = "/srv/archive"\n'
    )
    assert config.master_key_path == tmp_path / "keys" / "m.key"
    assert config.archive_path == Path("/srv/archive")


def test_named_issuer_and_target_tables_are_read(tmp_path: Path) -> None:
    config = load_config_text(
        tmp_path, '[issuers.le]\ntype = "acme"\ndirectory = "https://x"\n[targets.t]\ntype="acm"\n'
    )
    assert config.issuers["le"]["directory"] == "https://x"
    assert config.targets["t"]["type"] == "acm"


def test_unknown_section_is_refused_naming_it_and_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, "[colour]\nred = 1\n")
    assert "[colour]" in message
    assert str(tmp_path / "certman.toml") in message


def test_unknown_key_is_refused_naming_the_key_and_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[defaults]\nkey_typo = "ec-p256"\n')
    assert "defaults.key_typo" in message
    assert str(tmp_path / "certman.toml") in message
    assert "key_type" in message  # lists what the section takes


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[defaults]\nvalidity = 90\n", "defaults.validity"),
        ('[defaults]\nreuse_key = "yes"\n', "defaults.reuse_key"),
        ("[kms]\ncache_max_uses = true\n", "kms.cache_max_uses"),
        ('[kms]\ncache_max_uses = "3"\n', "kms.cache_max_uses"),
        ("[archive]\nbucket_key = 1\n", "archive.bucket_key"),
        ("[database]\nurl = []\n", "database.url"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key_and_the_file(
    tmp_path: Path, text: str, key: str
) -> None:
    message = refusal(tmp_path, text)
    assert key in message
    assert str(tmp_path / "certman.toml") in message


def test_a_section_given_as_a_value_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, 'defaults = "ec-p256"\n')
    assert "defaults" in message
    assert str(tmp_path / "certman.toml") in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[defaults]\nvalidity = "ninety days"\n', "defaults.validity"),
        ('[defaults]\nrenew_before = "-3d"\n', "defaults.renew_before"),
        ('[ca]\nmax_validity = "0d"\n', "ca.max_validity"),
        ('[ca]\ncrl_next_update = "7"\n', "ca.crl_next_update"),
    ],
)
def test_a_bad_duration_in_the_file_is_refused_naming_the_key_and_the_file(
    tmp_path: Path, text: str, key: str
) -> None:
    message = refusal(tmp_path, text)
    assert key in message
    assert str(tmp_path / "certman.toml") in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[defaults]\nkey_type = "dsa-1024"\n', "defaults.key_type"),
        ('[ca]\nkey_type = "ed25519"\n', "ca.key_type"),
    ],
)
def test_a_bad_key_type_in_the_file_is_refused_naming_the_key_and_the_file(
    tmp_path: Path, text: str, key: str
) -> None:
    message = refusal(tmp_path, text)
    assert key in message
    assert str(tmp_path / "certman.toml") in message
    assert "ec-p256" in message  # lists the valid ones


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, "[defaults\nkey_type = \n")
    assert "not valid TOML" in message
    assert str(tmp_path / "certman.toml") in message


def test_an_issuer_without_a_type_is_refused_naming_it_and_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[issuers.corp]\ndirectory = "https://x"\n')
    assert "issuers.corp" in message
    assert "type" in message
    assert str(tmp_path / "certman.toml") in message


def test_an_unknown_backend_type_is_refused_listing_the_known_ones(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, '[kms]\ntype = "vault"\n')
    with pytest.raises(ConfigError) as info:
        Runtime(config=config).key_wrapper  # noqa: B018
    assert "'vault'" in info.value.message
    assert "[kms]" in info.value.message
    assert str(tmp_path / "certman.toml") in info.value.message
    assert "local" in info.value.message


def test_an_unreadable_config_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "certman.toml"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match="cannot be read") as info:
        load_config(tmp_path, path)
    assert str(path) in info.value.message


def test_config_path_defaults_to_the_home_and_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTMAN_CONFIG", raising=False)
    assert resolve_config_path(tmp_path, None) == tmp_path / "certman.toml"
    monkeypatch.setenv("CERTMAN_CONFIG", str(tmp_path / "other.toml"))
    assert resolve_config_path(tmp_path, None) == tmp_path / "other.toml"
    assert resolve_config_path(tmp_path, tmp_path / "given.toml") == tmp_path / "given.toml"


def test_home_defaults_to_dot_certman_and_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTMAN_HOME", raising=False)
    assert resolve_home(None) == Path("~/.certman").expanduser()
    monkeypatch.setenv("CERTMAN_HOME", str(tmp_path))
    assert resolve_home(None) == tmp_path


def test_config_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE.name} is not at the top of the repository yet")
    text = EXAMPLE.read_text(encoding="utf-8")
    parse_config_text(tmp_path, EXAMPLE, text)  # a valid configuration as it stands
    raw = tomllib.loads(text)
    missing = [
        f"{section}.{key}"
        for section, keys in SCHEMA.items()
        for key in keys
        if key not in raw.get(section, {})
    ]
    assert not missing, f"{EXAMPLE.name} does not document: {', '.join(missing)}"
    wrong = [
        f"{section}.{key} = {raw[section][key]!r} (default {default!r})"
        for section, keys in SCHEMA.items()
        for key, default in keys.items()
        if raw[section][key] != default or type(raw[section][key]) is not type(default)
    ]
    assert not wrong, f"{EXAMPLE.name} shows other values than the defaults: {'; '.join(wrong)}"
    assert not set(raw) - set(SCHEMA) - set(NAMED_SECTIONS), "sections outside the schema"


def test_an_empty_ca_validity_is_refused_by_init_naming_the_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from certman.cli.main import app

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "certman.toml").write_text('[ca]\nmax_validity = ""\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["--home", str(home), "init"])
    assert result.exit_code == 2
    assert "ca.max_validity must be set" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in home.iterdir()) == ["certman.toml"]  # nothing was created


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[issuers.le]\ntype = "acme"\ndirectory = "https://acme.test/dir"\nemial = "x"\n',
            "Unknown key issuers.le.emial in {path}; an acme issuer takes: account_key_type",
            id="acme",
        ),
        pytest.param(
            '[issuers.corp]\ntype = "private-ca"\ncaa = "corp"\n',
            "Unknown key issuers.corp.caa in {path}; a private-ca issuer takes: ca.",
            id="private-ca",
        ),
        pytest.param(
            '[targets.west]\ntype = "acm"\nregoin = "us-west-2"\n',
            "Unknown key targets.west.regoin in {path}; an acm target takes: acm_strategy, region.",
            id="acm",
        ),
        pytest.param(
            '[targets.lb]\ntype = "elbv2"\nlistener_arn = "arn:x"\n',
            "Unknown key targets.lb.listener_arn in {path}; an elbv2 target takes:",
            id="elbv2",
        ),
        pytest.param(
            '[targets.web]\ntype = "file"\nkey_path = "/k"\nreload = "true"\n',
            "Unknown key targets.web.reload in {path}; a file target takes:",
            id="file",
        ),
    ],
)
def test_an_unknown_key_in_a_named_table_is_refused_when_the_config_is_loaded(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Refused at load, though no command has used that issuer or target yet."""
    assert expected.format(path=tmp_path / "certman.toml") in refusal(tmp_path, text)


def test_every_key_a_backend_declares_is_accepted_when_the_config_is_loaded(
    tmp_path: Path,
) -> None:
    from certman.acme_client.settings import DEFAULTS

    acme = "".join(f'{k} = "{v}"\n' for k, v in DEFAULTS.items() if k != "directory")
    config = load_config_text(
        tmp_path,
        f'[issuers.le]\ndirectory = "https://acme.test/dir"\n{acme}'
        '[issuers.corp]\ntype = "private-ca"\nca = "default"\n'
        '[targets.west]\ntype = "acm"\nregion = "us-west-2"\n',
    )
    assert set(config.issuers) == {"le", "corp"}


def test_a_table_of_a_type_registered_at_run_time_is_checked_when_built(tmp_path: Path) -> None:
    """The load-time check knows the registry's own backends; others check their tables."""
    config = load_config_text(tmp_path, '[issuers.flaky]\ntype = "fake"\nfailure = "retryable"\n')
    assert config.issuers["flaky"]["failure"] == "retryable"


def test_a_config_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "certman.toml"
    path.write_bytes(b'[ca]\ncommon_name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_config(tmp_path, path)
    assert str(path) in info.value.message
