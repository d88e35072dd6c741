"""What a CLI outcome must look like: JSON views, and errors an operator can act on."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import Cli, CliResult

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\[(])")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def assert_error(result: CliResult, exit_code: int) -> str:
    """Exit ``exit_code``; one line of one or two sentences on stderr; no traceback anywhere.

    Returns the message without its ``error:`` prefix.
    """
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    message = lines[0]
    assert message.startswith("error: "), message
    message = message.removeprefix("error: ")
    assert 1 <= len(sentences(message)) <= 2, f"not one or two sentences: {message!r}"
    return message


def show(cli: Cli, name: str) -> dict[str, Any]:
    return json.loads(cli.ok("show", name, "--json").stdout)  # type: ignore[no-any-return]


def listed(cli: Cli, *options: str) -> list[dict[str, Any]]:
    return json.loads(cli.ok("list", "--json", *options).stdout)  # type: ignore[no-any-return]
