"""Configuration mistakes are refused up front: exit 2, the key and the file named, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.outcomes import assert_error
from tests.conftest import Cli
from tests.homestate import assert_unchanged, snapshot_home


def with_config(home: Path, text: str) -> Path:
    config = home / "certman.toml"
    config.write_text(config.read_text() + "\n" + text)
    return config


def refused(cli: Cli, home: Path, *args: str) -> str:
    before = snapshot_home(home)
    message = assert_error(cli(*args), 2)
    assert_unchanged(before, home)
    return message


@pytest.mark.parametrize("command", [("serve", "--once"), ("list",), ("doctor",)])
def test_an_unknown_logging_level_is_refused_before_anything_runs(
    initialised_home: Path, cli: Cli, command: tuple[str, ...]
) -> None:
    config = with_config(initialised_home, '[logging]\nlevel = "LOUD"\n')
    message = refused(cli, initialised_home, *command)
    assert "logging.level" in message and str(config) in message and "'LOUD'" in message
    assert "debug, info, warning, error, critical" in message


def test_logging_levels_are_accepted_in_any_case(initialised_home: Path, cli: Cli) -> None:
    with_config(initialised_home, '[logging]\nlevel = "INFO"\n')
    cli.ok("list")


def test_a_database_url_of_another_kind_is_a_config_error_without_its_password(
    initialised_home: Path, cli: Cli
) -> None:
    config = with_config(initialised_home, '[database]\nurl = "mysql://ops:s3cret@db/certman"\n')
    message = refused(cli, initialised_home, "list")
    assert "database.url" in message and str(config) in message and "'mysql'" in message
    assert "s3cret" not in message


def test_a_database_url_sqlalchemy_cannot_load_is_a_config_error(
    initialised_home: Path, cli: Cli
) -> None:
    config = with_config(
        initialised_home, '[database]\nurl = "postgresql+nosuchdriver://ops:s3cret@db/certman"\n'
    )
    message = refused(cli, initialised_home, "list")
    assert "database.url" in message and str(config) in message
    assert "s3cret" not in message


@pytest.mark.parametrize("command", [("init",), ("list",), ("doctor",)])
def test_a_home_that_is_a_file_is_refused(tmp_path: Path, command: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    result = Cli(home)(*command)
    message = assert_error(result, 2)
    assert str(home) in message and "not a directory" in message
    assert home.read_text() == "not a directory\n"


def test_init_refuses_an_archive_path_that_is_a_file_before_creating_anything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "certman.toml").write_text('[archive]\npath = "bundles"\n')
    (home / "bundles").write_text("x")
    before = snapshot_home(home)
    message = assert_error(Cli(home)("init"), 2)
    assert "archive.path" in message and str(home / "bundles") in message
    assert_unchanged(before, home)


@pytest.mark.parametrize("command", [("list",), ("doctor",), ("ca", "list"), ("renew", "--due")])
def test_a_config_file_given_but_missing_is_refused(
    initialised_home: Path, cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "nowhere.toml"
    message = refused(cli, initialised_home, "--config", str(missing), *command)
    assert str(missing) in message and "does not exist" in message
    assert not missing.exists()


def test_a_config_file_named_by_the_environment_but_missing_is_refused(
    initialised_home: Path, cli: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    before = snapshot_home(initialised_home)
    message = assert_error(cli("list", env={"CERTMAN_CONFIG": str(missing)}), 2)
    assert str(missing) in message
    assert_unchanged(before, initialised_home)


def test_init_creates_the_config_file_given_by_config(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "etc" / "certman.toml"
    config.parent.mkdir()
    Cli(home).ok("--config", str(config), "init")
    assert config.is_file()
    Cli(home).ok("--config", str(config), "list")


def test_init_refuses_a_config_file_in_a_missing_directory(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "etc" / "certman.toml"
    message = assert_error(Cli(home)("--config", str(config), "init"), 2)
    assert str(config) in message
    assert not home.exists()


def test_a_config_file_that_is_not_utf8_is_refused_naming_it(
    initialised_home: Path, cli: Cli
) -> None:
    config = initialised_home / "certman.toml"
    config.write_bytes(config.read_bytes() + b'\n[ca]\ncommon_name = "caf\xe9"\n')
    message = refused(cli, initialised_home, "list")
    assert str(config) in message and "not UTF-8" in message


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("bogus=1", "'bogus'", id="unknown-option"),
        pytest.param("timeout=30&bogus=1", "'bogus'", id="unknown-among-known"),
    ],
)
def test_a_sqlite_url_option_sqlite_does_not_take_is_refused(
    initialised_home: Path, cli: Cli, query: str, expected: str
) -> None:
    url = f"sqlite:///{initialised_home / 'certman.db'}?{query}"
    config = with_config(initialised_home, f'[database]\nurl = "{url}"\n')
    message = refused(cli, initialised_home, "list")
    assert "database.url" in message and str(config) in message and expected in message


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("bogus=1", 'invalid connection option "bogus"', id="unknown-option"),
        pytest.param("connect_timeout=abc", "connect_timeout", id="bad-value"),
    ],
)
def test_a_postgresql_url_option_psycopg_refuses_is_a_config_error_without_the_password(
    initialised_home: Path, cli: Cli, query: str, expected: str
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://ops:s3cret@127.0.0.1:1/certman?{query}"
    config = with_config(initialised_home, f'[database]\nurl = "{url}"\n')
    message = refused(cli, initialised_home, "list")
    assert "database.url" in message and str(config) in message and expected in message
    assert "s3cret" not in message
