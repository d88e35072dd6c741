"""The session's moto server (tests/components/fixtures.py), reset per test, and homes on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.components.moto_server import MotoServer
from tests.conftest import Cli

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> MotoServer:
    """An empty moto account, dummy credentials, and nothing read from the real ~/.aws."""
    moto.reset()
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(nowhere),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
        "AWS_EC2_METADATA_DISABLED": "true",
        # moto answers what it does not implement with HTTP 500: do not retry it.
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return moto


@dataclass
class Aws:
    endpoint_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

    def kms_key(self, alias: str = "alias/certman") -> str:
        kms = self.client("kms")
        key_id = kms.create_key(Description="certman test")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        return key_id

    def bucket(self, name: str = "certman-archive", versioned: bool = False) -> str:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


@pytest.fixture
def aws(aws_env: MotoServer) -> Aws:
    return Aws(endpoint_url=aws_env.endpoint_url)


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "certman.toml").write_text(text)


def aws_config(
    aws: Aws,
    *,
    kms: bool = True,
    sse: str | None = "kms",
    client_side: bool = False,
    acm: bool = True,
) -> str:
    parts = [f'[aws]\nregion = "{REGION}"\nendpoint_url = "{aws.endpoint_url}"\n']
    if kms:
        parts.append('[kms]\ntype = "aws-kms"\nkey_id = "alias/certman"\n')
    if sse is not None:
        parts.append(
            '[archive]\ntype = "s3"\nbucket = "certman-archive"\nprefix = "archive/"\n'
            f'sse = "{sse}"\nkms_key_id = "alias/certman"\n'
            f"client_side = {'true' if client_side else 'false'}\n"
        )
    if acm:
        parts.append('[targets.acm]\ntype = "acm"\n')
    return "\n".join(parts)


@pytest.fixture
def aws_home(home: Path, aws: Aws) -> Path:
    """A home sealing with KMS, archiving to S3 with SSE-KMS, with an `acm` target."""
    aws.kms_key()
    aws.bucket()
    write_config(home, aws_config(aws))
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    return home


@pytest.fixture
def aws_runtime(aws_home: Path) -> Iterator[Runtime]:
    rt = Runtime(config=load_config(aws_home, aws_home / "certman.toml"))
    yield rt
    rt.engine.dispose()


@pytest.fixture
def aws_cli(aws_home: Path) -> Cli:
    return Cli(aws_home)
