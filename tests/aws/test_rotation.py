"""`certman keys rotate --to`: every sealed secret moves; a rerun finishes an interrupted move."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from certman.acme_client.account import key_context as acme_key_context
from sqlmodel import select

from certman.aws.kms import KmsKeyWrapper
from certman.config import load_config
from certman.errors import KeyWrapError
from certman.inventory.tables import AcmeAccount, AuditKey, Authority, Revision
from certman.models import WrappedKey
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.aws.conftest import Aws, aws_config, write_config
from tests.conftest import Cli

# CA root + intermediate, 3 leaf keys, 3 SSE-C keys, 1 ACME account, the audit key
SECRETS = 2 + 3 + 3 + 1 + 1


def sealed_records(rt: Runtime) -> list[WrappedKey]:
    with rt.session() as session:
        texts: list[str] = []
        for rev in session.exec(select(Revision)).all():
            texts += [rev.sealed_key] if rev.sealed_key else []
            extra = json.loads(rev.archive_extra) if rev.archive_extra else {}
            texts += [extra["sse_c_key"]] if "sse_c_key" in extra else []
        for ca in session.exec(select(Authority)).all():
            texts += [ca.root_sealed_key, ca.intermediate_sealed_key]
        texts += [a.sealed_key for a in session.exec(select(AcmeAccount)).all()]
        texts += [k.sealed_key for k in session.exec(select(AuditKey)).all()]
    return [WrappedKey.from_json(t) for t in texts]


@pytest.fixture
def local_home(home: Path, aws: Aws) -> Path:
    """Keys sealed locally, archives in S3 with SSE-C, three certificates and an ACME account."""
    aws.kms_key()
    aws.bucket()
    text = aws_config(aws, kms=False, sse="c", acm=False) + '\n[kms]\nkey_id = "alias/certman"\n'
    write_config(home, text)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    for name in ("web", "api", "mail"):
        cli.ok("issue", name, "-d", f"{name}.example.com")
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    now = datetime.now(UTC)
    with rt.session() as session:
        session.add(
            AcmeAccount(
                issuer="le",
                directory="https://acme.example/directory",
                key_type="ec-p256",
                sealed_key=rt.key_wrapper.wrap(b"account key", acme_key_context("le")).to_json(),
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    rt.engine.dispose()
    return home


def test_an_interrupted_move_is_finished_by_running_it_again(
    local_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = Cli(local_home)
    rt = Runtime(config=load_config(local_home, local_home / "certman.toml"))
    assert len(sealed_records(rt)) == SECRETS
    assert {r.wrapper for r in sealed_records(rt)} == {"local"}

    real_wrap = KmsKeyWrapper.wrap
    budget = {"left": 4}

    def failing_wrap(self: KmsKeyWrapper, plaintext: bytes, context: Any) -> WrappedKey:
        if budget["left"] == 0:
            raise KeyWrapError("KMS went away (injected).", retryable=True)
        budget["left"] -= 1
        return real_wrap(self, plaintext, context)

    monkeypatch.setattr(KmsKeyWrapper, "wrap", failing_wrap)
    result = cli("keys", "rotate", "--to", "aws-kms")
    assert result.exit_code == 1 and "injected" in result.stderr
    half = [r.wrapper for r in sealed_records(rt)]
    assert 0 < half.count("aws-kms") < SECRETS
    # half-way, certman still opens both kinds
    cli.ok("export", "web", "--out", str(tmp_path / "half"))
    assert "[ok  ] archive" in cli.ok("archive", "verify").stdout

    monkeypatch.setattr(KmsKeyWrapper, "wrap", real_wrap)
    out = cli.ok("keys", "rotate", "--to", "aws-kms").stdout
    assert f"{SECRETS - half.count('aws-kms')} sealed keys re-sealed with aws-kms" in out
    assert 'set [kms] type = "aws-kms"' in out
    records = sealed_records(rt)
    assert {r.wrapper for r in records} == {"aws-kms"}
    assert all(":key/" in r.key_id for r in records)
    # a third run finds nothing left to do
    assert "0 sealed keys re-sealed" in cli.ok("keys", "rotate", "--to", "aws-kms").stdout

    # the ACME issuer opens its account key with its own context: the same one
    with rt.session() as session:
        account = session.exec(select(AcmeAccount)).one()
    assert (
        rt.key_wrapper.unwrap(WrappedKey.from_json(account.sealed_key), acme_key_context("le"))
        == b"account key"
    )
    # switch the config: SSE-C keys (now KMS-sealed) still open the archived objects
    config = local_home / "certman.toml"
    config.write_text(config.read_text().replace("[kms]\n", '[kms]\ntype = "aws-kms"\n'))
    assert "[ok  ] archive" in cli.ok("archive", "verify").stdout
    cli.ok("renew", "web", "--force")
    rt.engine.dispose()


def test_moving_to_local_creates_the_master_key_when_there_is_none(home: Path, aws: Aws) -> None:
    aws.kms_key()
    write_config(home, aws_config(aws, sse=None, acm=False))
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    cli.ok("issue", "web", "-d", "www.example.com")
    assert not (home / "master.key").exists()
    out = cli.ok("keys", "rotate", "--to", "local").stdout
    assert (home / "master.key").stat().st_mode & 0o777 == 0o600
    assert "4 sealed keys re-sealed with local" in out  # CA root + intermediate, leaf, audit
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    assert {r.wrapper for r in sealed_records(rt)} == {"local"}
    rt.engine.dispose()
