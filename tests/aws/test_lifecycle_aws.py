"""Issue -> sealed by KMS -> archived in S3 -> imported into ACM -> renewed -> same ARN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from certman.config import load_config
from certman.inventory.tables import Authority, Revision
from certman.models import WrappedKey
from certman.service.home import init_home
from tests.aws.conftest import Aws, aws_config, write_config
from tests.conftest import Cli


def show(cli: Cli, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cli.ok("show", name, "--json").stdout)


def tags(aws: Aws, arn: str) -> dict[str, str]:
    answer = aws.client("acm").list_tags_for_certificate(CertificateArn=arn)
    return {t["Key"]: t["Value"] for t in answer["Tags"]}


def acm_serial(aws: Aws, arn: str) -> str:
    from certman.aws.acm_certs import acm_serial as normalise

    cert = aws.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    return normalise(cert["Serial"])


@pytest.mark.parametrize("sse", ["s3", "kms", "c"])
def test_issue_archive_import_renew_keeps_the_arn(sse: str, home: Path, aws: Aws) -> None:
    aws.kms_key()
    aws.bucket(versioned=sse == "kms")
    write_config(home, aws_config(aws, sse=sse))
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)

    cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    first = show(cli, "web")
    arn = first["acm_arn"]
    assert arn and arn.startswith("arn:aws:acm:")
    assert acm_serial(aws, arn) == first["serial"]
    assert tags(aws, arn) == {"certman:name": "web", "certman:revision": "1"}
    assert first["revisions"][0]["state"] == "active"

    cli.ok("renew", "web", "--force")
    second = show(cli, "web")
    assert second["acm_arn"] == arn, "a renewal re-imports to the same ARN"
    assert second["serial"] != first["serial"]
    assert acm_serial(aws, arn) == second["serial"]
    assert tags(aws, arn)["certman:revision"] == "2"
    assert len(aws.client("acm").list_certificates()["CertificateSummaryList"]) == 1

    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="certman-archive")["Contents"]]
    assert sorted(keys) == ["archive/web/000001.bundle", "archive/web/000002.bundle"]
    if sse != "c":
        head = s3.head_object(Bucket="certman-archive", Key=keys[0])
        assert head["ServerSideEncryption"] == {"s3": "AES256", "kms": "aws:kms"}[sse]
        assert head["Metadata"]["certificate"] == "web"
    assert "archive" in cli.ok("archive", "verify").stdout


def test_every_key_is_sealed_by_kms(aws_runtime, aws_cli: Cli) -> None:  # type: ignore[no-untyped-def]
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    with aws_runtime.session() as session:
        sealed = [r.sealed_key for r in session.exec(select(Revision)).all()]
        for ca in session.exec(select(Authority)).all():
            sealed += [ca.root_sealed_key, ca.intermediate_sealed_key]
    wrappers = {WrappedKey.from_json(s).wrapper for s in sealed if s}
    assert wrappers == {"aws-kms"}
    assert all(":key/" in WrappedKey.from_json(s).key_id for s in sealed if s)


def test_no_plaintext_key_in_home_database_or_bucket(
    aws_home: Path, aws_cli: Cli, aws: Aws, tmp_path: Path
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    aws_cli.ok("renew", "web", "--force")
    out = tmp_path / "export"
    aws_cli.ok("export", "web", "--out", str(out))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((out / "privkey.pem").read_bytes(), None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    blobs = [p.read_bytes() for p in aws_home.rglob("*") if p.is_file()]
    s3 = aws.client("s3")
    for obj in s3.list_objects_v2(Bucket="certman-archive")["Contents"]:
        blobs.append(s3.get_object(Bucket="certman-archive", Key=obj["Key"])["Body"].read())
    assert len(blobs) > 4
    for blob in blobs:
        assert b"PRIVATE KEY" not in blob
        assert der not in blob
        assert scalar not in blob


def test_no_plaintext_key_in_any_object_version_with_sse_c_and_client_side(
    home: Path, aws: Aws
) -> None:
    from cryptography.hazmat.primitives import serialization

    from certman.service.authorities import key_context as ca_key_context
    from certman.service.runtime import Runtime
    from certman.service.steps import unseal_private_key

    aws.kms_key()
    aws.bucket(versioned=True)
    write_config(home, aws_config(aws, sse="c", client_side=True))
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    cli.ok("renew", "web", "--force")

    # every private key certman holds, unsealed here in memory only
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    with rt.session() as session:
        revisions = session.exec(select(Revision)).all()
        ca = session.exec(select(Authority)).one()
    ders = [unseal_private_key(rt, "web", rev) for rev in revisions]
    for role in ("root", "intermediate"):
        sealed = WrappedKey.from_json(getattr(ca, f"{role}_sealed_key"))
        ders.append(rt.key_wrapper.unwrap(sealed, ca_key_context(ca.name, role)))
    rt.engine.dispose()
    needles = [b"PRIVATE KEY"]
    for der in ders:
        key = serialization.load_der_private_key(der, None)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        needles += [der, pem.splitlines()[1]]  # the DER, and a line of its PEM body
        needles.append(key.private_numbers().private_value.to_bytes(32, "big"))  # type: ignore[union-attr]

    blobs = {str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert any(name.endswith("certman.db") for name in blobs)
    s3 = aws.client("s3")
    versions = s3.list_object_versions(Bucket="certman-archive")["Versions"]
    assert len(versions) == 2
    for v in versions:
        body = s3.get_object(Bucket="certman-archive", Key=v["Key"], VersionId=v["VersionId"])
        blobs[f"s3:{v['Key']}@{v['VersionId']}"] = body["Body"].read()  # moto ignores SSE-C
    for where, blob in blobs.items():
        for needle in needles:
            assert needle not in blob, f"plaintext key material in {where}"
