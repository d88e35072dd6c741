"""The audit chain under the aws-kms key wrapper: its key sealed by KMS, moved with the rest."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.aws.conftest import Aws, aws_config, write_config
from tests.cli.outcomes import assert_error
from tests.conftest import Cli


def audit_key_wrapper(home: Path) -> str:
    with sqlite3.connect(home / "certman.db") as db:
        (sealed,) = db.execute("SELECT sealed_key FROM audit_key").fetchone()
    return str(json.loads(sealed)["wrapper"])


def test_the_audit_key_is_sealed_by_kms_and_the_chain_verifies(
    aws_home: Path, aws_cli: Cli
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    assert audit_key_wrapper(aws_home) == "aws-kms"
    assert "chain intact" in aws_cli.ok("audit", "verify").stdout
    with sqlite3.connect(aws_home / "certman.db") as db:
        db.execute("DELETE FROM audit_event WHERE seq = (SELECT max(seq) FROM audit_event)")
    assert "newest events were deleted" in assert_error(aws_cli("audit", "verify"), 1)


def test_moving_keys_to_kms_moves_the_audit_key(home: Path, aws: Aws) -> None:
    aws.kms_key()
    write_config(
        home,
        aws_config(aws, kms=False, sse=None, acm=False) + '\n[kms]\nkey_id = "alias/certman"\n',
    )
    cli = Cli(home)
    cli.ok("init")
    assert audit_key_wrapper(home) == "local"
    cli.ok("keys", "rotate", "--to", "aws-kms")
    assert audit_key_wrapper(home) == "aws-kms"
    assert "chain intact" in cli.ok("audit", "verify").stdout
