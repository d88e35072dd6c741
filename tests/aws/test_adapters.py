"""The AWS adapters one by one, against the moto server: KMS, S3 SSE-C, ACM checks, errors."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certman.aws.acm import AcmDeployer
from certman.aws.acm_certs import check_bundle
from certman.aws.clients import AwsClients
from certman.aws.kms import DataKeyCache, KmsKeyWrapper
from certman.aws.s3 import S3ArchiveStore
from certman.contracts.archive import ArchiveGetRequest, ArchivePutRequest, ArchiveRef
from certman.contracts.deployer import DeployRequest
from certman.errors import (
    DeployError,
    IntegrityError,
    KeyWrapError,
    OperationError,
    ValidationError,
)
from certman.models import EncryptionContext
from tests.aws.conftest import REGION, Aws
from tests.conftest import Cli

CTX = EncryptionContext(certificate="web", revision=1, purpose="private-key")


def clients(aws: Aws) -> AwsClients:
    return AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)


def kms_wrapper(aws: Aws, cache: DataKeyCache | None = None) -> KmsKeyWrapper:
    aws.kms_key()
    return KmsKeyWrapper(kms=clients(aws).client("kms"), key_id="alias/certman", cache=cache)


def test_kms_round_trip_binds_the_encryption_context(aws: Aws) -> None:
    wrapper = kms_wrapper(aws)
    sealed = wrapper.wrap(b"secret", CTX)
    assert sealed.wrapper == "aws-kms" and b"secret" not in sealed.ciphertext
    assert wrapper.unwrap(sealed, CTX) == b"secret"
    other = EncryptionContext(certificate="web", revision=2, purpose="private-key")
    with pytest.raises(KeyWrapError, match="another certificate, revision or purpose"):
        wrapper.unwrap(sealed, other)


def test_kms_sends_the_context_as_encryption_context(aws: Aws) -> None:
    wrapper = kms_wrapper(aws)
    seen: list[dict[str, Any]] = []
    wrapper.kms.meta.events.register(
        "before-parameter-build.kms.*",
        lambda params, **_: seen.append(params.get("EncryptionContext")),
    )
    wrapper.unwrap(wrapper.wrap(b"x", CTX), CTX)
    assert seen == [CTX.as_dict(), CTX.as_dict()]


def test_data_key_cache_is_bounded_by_uses(aws: Aws) -> None:
    wrapper = kms_wrapper(aws, DataKeyCache(max_age=60, max_uses=2))
    calls: list[str] = []
    wrapper.kms.meta.events.register(
        "before-call.kms.GenerateDataKey", lambda **_: calls.append("gdk")
    )
    for _ in range(5):
        wrapper.wrap(b"x", CTX)
    assert len(calls) == 3  # 2 uses per data key: calls 1, 3 and 5 ask KMS
    wrapper.wrap(b"x", EncryptionContext(certificate="api", revision=1, purpose="private-key"))
    assert len(calls) == 4, "another context never shares a cached data key"


def test_data_key_cache_is_bounded_by_age(aws: Aws) -> None:
    wrapper = kms_wrapper(aws, DataKeyCache(max_age=0, max_uses=100))
    calls: list[str] = []
    wrapper.kms.meta.events.register(
        "before-call.kms.GenerateDataKey", lambda **_: calls.append("g")
    )
    wrapper.wrap(b"x", CTX)
    wrapper.wrap(b"x", CTX)
    assert len(calls) == 2


def test_disabled_kms_key_fails_preflight(aws: Aws) -> None:
    key_id = aws.kms_key()
    wrapper = KmsKeyWrapper(kms=clients(aws).client("kms"), key_id="alias/certman")
    aws.client("kms").disable_key(KeyId=key_id)
    result = wrapper.preflight(now=None)  # type: ignore[arg-type]
    assert not result.ok
    assert "Disabled" in result.checks[0][2] and "enable it" in result.checks[0][2]


def test_missing_kms_key_is_a_clear_error(aws: Aws) -> None:
    wrapper = KmsKeyWrapper(kms=clients(aws).client("kms"), key_id="alias/nope")
    with pytest.raises(KeyWrapError, match="alias/nope does not exist"):
        wrapper.wrap(b"x", CTX)


def s3_store(aws: Aws, sse: str) -> S3ArchiveStore:
    aws.bucket()
    return S3ArchiveStore(
        s3=clients(aws).client("s3"),
        bucket="certman-archive",
        prefix="archive/",
        sse=sse,
        key_wrapper=kms_wrapper(aws),
    )


def test_sse_c_key_is_sent_on_every_put_get_head_and_copy(aws: Aws) -> None:
    store = s3_store(aws, "c")
    sent: dict[str, dict[str, Any]] = {}

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        # the request as it goes on the wire: its headers
        sent[model.name] = {k.lower(): v for k, v in params["headers"].items()}

    store.s3.meta.events.register("before-call.s3.*", capture)
    ref = store.put(ArchivePutRequest(name="web", revision=1, body=b"bundle"))
    assert store.get(ArchiveGetRequest(ref=ref)).body == b"bundle"
    store.head(ref)
    store.copy(ref, "archive/copy/000001.bundle")
    prefix = "x-amz-server-side-encryption-customer-"
    for operation in ("PutObject", "GetObject", "HeadObject", "CopyObject"):
        headers = sent[operation]
        assert headers[prefix + "algorithm"] == "AES256", operation
        key = base64.b64decode(headers[prefix + "key"])
        assert len(key) == 32, operation
        md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
        assert headers[prefix + "key-md5"] == md5, operation
    copy = sent["CopyObject"]
    source = "x-amz-copy-source-server-side-encryption-customer-key"
    assert copy[source] == copy[prefix + "key"]
    # the customer key is stored only sealed, and differs per object
    assert "sse_c_key" in ref.extra and b"bundle" not in ref.extra["sse_c_key"].encode()
    other = store.put(ArchivePutRequest(name="web", revision=2, body=b"bundle"))
    assert other.extra["sse_c_key"] != ref.extra["sse_c_key"]


def test_sse_c_object_without_its_key_is_refused_by_certman(aws: Aws) -> None:
    store = s3_store(aws, "c")
    ref = store.put(ArchivePutRequest(name="web", revision=1, body=b"bundle"))
    keyless = ArchiveRef(location=ref.location, sha256=ref.sha256)
    with pytest.raises(IntegrityError, match="without its key"):
        store.get(ArchiveGetRequest(ref=keyless))


def test_s3_read_checks_the_sha256(aws: Aws) -> None:
    store = s3_store(aws, "s3")
    ref = store.put(ArchivePutRequest(name="web", revision=1, body=b"bundle"))
    store.s3.put_object(Bucket="certman-archive", Key=ref.location, Body=b"tampered")
    with pytest.raises(IntegrityError, match="SHA-256"):
        store.get(ArchiveGetRequest(ref=ref))


def test_s3_client_side_encryption_hides_even_the_header(aws: Aws) -> None:
    store = s3_store(aws, "kms")
    store.client_side = True
    ref = store.put(ArchivePutRequest(name="web", revision=1, body=b'{"name":"web"}\nbody'))
    raw = store.s3.get_object(Bucket="certman-archive", Key=ref.location)["Body"].read()
    assert b'"name":"web"' not in raw
    assert store.get(ArchiveGetRequest(ref=ref)).body == b'{"name":"web"}\nbody'


def test_missing_bucket_is_a_clear_error(aws: Aws) -> None:
    store = S3ArchiveStore(
        s3=clients(aws).client("s3"),
        bucket="nope",
        prefix="",
        sse="s3",
        key_wrapper=kms_wrapper(aws),
    )
    with pytest.raises(OperationError, match=r"s3://nope/.* does not exist"):
        store.put(ArchivePutRequest(name="web", revision=1, body=b"x"))


def _pem_pair(cli: Cli, name: str, tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    out = tmp_path / name
    cli.ok("export", name, "--out", str(out))
    return (
        (out / "cert.pem").read_bytes(),
        (out / "chain.pem").read_bytes(),
        (out / "privkey.pem").read_bytes(),
    )


def test_a_key_that_does_not_match_is_refused_before_import(
    aws_cli: Cli, aws: Aws, tmp_path: Path
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    cert, chain, _ = _pem_pair(aws_cli, "web", tmp_path)
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    deployer = AcmDeployer(acm=clients(aws).client("acm"), name="acm")
    with pytest.raises(ValidationError, match="does not belong"):
        deployer.deploy(
            DeployRequest(
                name="web",
                revision=1,
                certificate_pem=cert,
                chain_pem=chain,
                private_key_pem=stranger,
            )
        )
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []


def test_a_chain_that_does_not_link_is_refused(aws_cli: Cli, tmp_path: Path) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    cert, _, key = _pem_pair(aws_cli, "web", tmp_path)
    with pytest.raises(ValidationError, match="does not link"):
        check_bundle(cert, cert, key)  # the leaf did not issue itself


def test_the_same_revision_is_not_imported_twice(aws_cli: Cli, aws: Aws, tmp_path: Path) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    cert, chain, key = _pem_pair(aws_cli, "web", tmp_path)
    deployer = AcmDeployer(acm=clients(aws).client("acm"), name="acm")
    imports: list[str] = []
    deployer.acm.meta.events.register(
        "before-call.acm.ImportCertificate", lambda **_: imports.append("import")
    )
    request = DeployRequest(
        name="web", revision=1, certificate_pem=cert, chain_pem=chain, private_key_pem=key
    )
    first = deployer.deploy(request)
    again = deployer.deploy(
        DeployRequest(**{**request.__dict__, "acm_arn": first.state["acm_arn"]})
    )
    assert first.changed and not again.changed
    assert again.state["acm_arn"] == first.state["acm_arn"]
    assert imports == ["import"]


def test_a_deleted_arn_is_a_clear_error_on_renewal(aws_cli: Cli, aws: Aws) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    arn = json.loads(aws_cli.ok("show", "web", "--json").stdout)["acm_arn"]
    aws.client("acm").delete_certificate(CertificateArn=arn)
    result = aws_cli("renew", "web", "--force")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    view = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert view["revision"] == 1 and view["revisions"][0]["state"] == "active"


def test_no_credentials_is_a_clear_error(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    wrapper = KmsKeyWrapper(kms=clients(aws).client("kms"), key_id="alias/certman")
    with pytest.raises(KeyWrapError, match="No usable AWS credentials"):
        wrapper.wrap(b"x", CTX)


def test_throttling_is_retryable_with_a_clear_message(aws: Aws) -> None:
    from botocore.exceptions import ClientError

    from certman.aws.errors import aws_call

    error = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "ImportCertificate"
    )
    with (
        pytest.raises(DeployError) as caught,
        aws_call("acm:ImportCertificate", "arn:x", DeployError),
    ):
        raise error
    assert caught.value.retryable and "try again later" in caught.value.message
    assert "certman will retry" not in caught.value.message


def test_access_denied_names_the_permission(aws: Aws) -> None:
    from botocore.exceptions import ClientError

    from certman.aws.errors import aws_call

    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Decrypt")
    with (
        pytest.raises(KeyWrapError) as caught,
        aws_call("kms:Decrypt", "alias/certman", KeyWrapError),
    ):
        raise error
    assert caught.value.retryable, "granting the permission fixes it; nothing is lost"
    assert "denied kms:Decrypt on alias/certman" in caught.value.message


def test_a_kms_key_deleted_for_good_is_permanent(aws: Aws) -> None:
    from botocore.exceptions import ClientError

    from certman.aws.errors import Hints, aws_call

    error = ClientError({"Error": {"Code": "NotFoundException", "Message": "gone"}}, "Decrypt")
    with (
        pytest.raises(KeyWrapError) as caught,
        aws_call("kms:Decrypt", "arn:aws:kms:k", KeyWrapError, Hints(missing_is_final=True)),
    ):
        raise error
    assert not caught.value.retryable, "no retry can bring a deleted KMS key back"
    with (
        pytest.raises(KeyWrapError) as caught,
        aws_call("kms:GenerateDataKey", "alias/x", KeyWrapError),
    ):
        raise error
    assert caught.value.retryable, "a missing alias can be created"
