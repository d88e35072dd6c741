"""Shared fixtures: a fresh certman home per test, the CLI through CliRunner, a runtime."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certman.cli.main import app
from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.components.fixtures import moto, pebble, softhsm

__all__ = ["moto", "pebble", "softhsm"]  # session components, one per run for every folder


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `certman --home HOME ...` in-process and captures stdout and stderr apart."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        result = self.runner.invoke(app, ["--home", str(self.home), *args], env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        result = self(*args, env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home)


@pytest.fixture
def initialised_home(home: Path) -> Path:
    config = load_config(home, home / "certman.toml")
    init_home(config, ca_key_type=None)
    return home


@pytest.fixture
def runtime(initialised_home: Path) -> Iterator[Runtime]:
    rt = Runtime(config=load_config(initialised_home, initialised_home / "certman.toml"))
    yield rt
    rt.engine.dispose()
