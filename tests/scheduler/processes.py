"""Helpers for tests that run `certman serve` as real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def certman(home: Path, config: Path | None = None) -> list[str]:
    exe = shutil.which("certman", path=str(Path(sys.executable).parent))
    base = [exe] if exe else [sys.executable, "-m", "certman"]
    return [*base, "--home", str(home), *(["--config", str(config)] if config else [])]


def run(home: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*certman(home, config), *args], capture_output=True, text=True, timeout=120
    )


def serve(home: Path, config: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*certman(home, config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(service: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """SIGTERM, wait; the exit code and what it wrote on stderr."""
    service.terminate()
    try:
        _, err = service.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.kill()
        _, err = service.communicate()
        raise AssertionError(f"certman serve did not stop within {timeout}s:\n{err}") from None
    return service.returncode, err


def get(url: str) -> tuple[int, str]:
    """Status and body; 0 when nothing listens (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def show(home: Path, name: str) -> dict[str, Any]:
    result = run(home, "show", name, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def metrics(port: int) -> dict[str, Any]:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(text)}
