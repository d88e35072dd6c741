"""End-to-end fixtures: the installed `certman` run as a separate process on a temp home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def installed_certman() -> str:
    """The console script installed next to this interpreter (the project's venv)."""
    beside = Path(sys.executable).parent / "certman"
    found = str(beside) if beside.exists() else shutil.which("certman")
    if found is None:
        pytest.fail("the certman console script is not installed; run `pip install -e .`")
    return found


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class CertmanProcess:
    """Runs the installed certman with CERTMAN_HOME set; keeps every run for later checks."""

    home: Path
    command: list[str] = field(default_factory=lambda: [installed_certman()])
    runs: list[Run] = field(default_factory=list)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAN_")}
        env["CERTMAN_HOME"] = str(self.home)
        env.update(extra or {})
        return env

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Run:
        result = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=120,
        )
        run = Run(args, result.returncode, result.stdout, result.stderr)
        self.runs.append(run)
        return run

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Run:
        run = self(*args, env=env)
        assert run.returncode == 0, (args, run.stdout, run.stderr)
        return run


@pytest.fixture
def certman(tmp_path: Path) -> CertmanProcess:
    return CertmanProcess(home=tmp_path / "home")
