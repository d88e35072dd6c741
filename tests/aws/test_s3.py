"""The S3 archive store against moto: SSE modes, metadata, versions, keyless SSE-C reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certman.aws.clients import AwsClients
from certman.aws.kms import KmsKeyWrapper
from certman.aws.s3 import S3ArchiveStore
from certman.config import load_config
from certman.contracts.archive import ArchiveGetRequest, ArchivePutRequest, ArchiveRef
from certman.errors import ArchiveError, IntegrityError
from certman.service.home import init_home
from tests.aws.conftest import REGION, Aws, aws_config, write_config
from tests.aws.faults import Fault
from tests.conftest import Cli

BUCKET = "certman-archive"


def store(
    aws: Aws, sse: str, *, versioned: bool = False, setup: bool = True, **options: Any
) -> S3ArchiveStore:
    if setup:
        aws.kms_key()
        aws.bucket(versioned=versioned)
    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)
    return S3ArchiveStore(
        s3=clients.client("s3"),
        bucket=BUCKET,
        prefix="archive/",
        sse=sse,
        key_wrapper=KmsKeyWrapper(kms=clients.client("kms"), key_id="alias/certman"),
        kms_key_id="alias/certman",
        **options,
    )


def put(target: S3ArchiveStore, revision: int = 1, body: bytes = b"bundle") -> ArchiveRef:
    return target.put(
        ArchivePutRequest(
            name="web",
            revision=revision,
            body=body,
            metadata={"certificate": "web", "revision": str(revision), "fingerprint": "ab" * 32},
        )
    )


def sent_params(target: S3ArchiveStore, operation: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    target.s3.meta.events.register(
        f"before-parameter-build.s3.{operation}", lambda params, **_: seen.append(dict(params))
    )
    return seen


@pytest.mark.parametrize(
    ("sse", "expected"), [("s3", "AES256"), ("kms", "aws:kms")], ids=["sse-s3", "sse-kms"]
)
def test_server_side_encryption_and_metadata_are_set(aws: Aws, sse: str, expected: str) -> None:
    target = store(aws, sse)
    ref = put(target)
    head = target.head(ref)
    assert head["ServerSideEncryption"] == expected
    assert head["Metadata"] == {
        "certificate": "web",
        "revision": "1",
        "fingerprint": "ab" * 32,
        "sha256": ref.sha256,
        "sse": sse,
    }
    if sse == "kms":
        assert head["BucketKeyEnabled"] is True
        assert head["SSEKMSKeyId"]  # S3 answers the key ARN; moto echoes what was sent


def test_uploads_carry_a_sha256_checksum_s3_verifies(aws: Aws) -> None:
    target = store(aws, "s3")
    puts = sent_params(target, "PutObject")
    put(target)
    assert puts[0]["ChecksumAlgorithm"] == "SHA256"


def test_a_versioned_bucket_reads_the_version_each_revision_wrote(aws: Aws) -> None:
    target = store(aws, "kms", versioned=True)
    ref = put(target, body=b"first")
    assert ref.extra["version_id"]
    put(target, body=b"second")  # the same key again: a new object version
    assert target.get(ArchiveGetRequest(ref=ref)).body == b"first"


def test_an_sse_c_object_is_refused_without_its_key_whatever_the_config(aws: Aws) -> None:
    ref = put(store(aws, "c"))
    keyless = ArchiveRef(location=ref.location, sha256=ref.sha256)
    # configured for SSE-KMS now: the object itself says it is SSE-C
    reader = store(aws, "kms", setup=False)
    with pytest.raises(IntegrityError, match="without its key"):
        reader.get(ArchiveGetRequest(ref=keyless))
    with pytest.raises(IntegrityError, match="without its key"):
        reader.head(keyless)


def test_each_sse_c_object_has_its_own_customer_key_sealed_for_its_revision(aws: Aws) -> None:
    target = store(aws, "c")
    one, two = put(target, 1), put(target, 2)
    assert one.extra["sse_c_key"] != two.extra["sse_c_key"]
    swapped = ArchiveRef(
        location=two.location, sha256=two.sha256, extra={"sse_c_key": one.extra["sse_c_key"]}
    )
    with pytest.raises(Exception, match="another certificate, revision or purpose"):
        target.get(ArchiveGetRequest(ref=swapped))


def test_client_side_sealing_on_top_of_sse_c(aws: Aws) -> None:
    target = store(aws, "c", client_side=True)
    ref = put(target, body=b'{"name":"web"}\nciphertext')
    raw = target.s3.get_object(Bucket=BUCKET, Key=ref.location)["Body"].read()  # moto: no key
    assert b'"name":"web"' not in raw
    assert target.get(ArchiveGetRequest(ref=ref)).body == b'{"name":"web"}\nciphertext'


def test_put_many_stores_every_bundle_and_keeps_the_order(aws: Aws) -> None:
    target = store(aws, "s3")
    requests = [
        ArchivePutRequest(name=f"host{i}", revision=1, body=f"bundle {i}".encode())
        for i in range(20)
    ]
    refs = target.put_many(requests)
    assert [r.location for r in refs] == [f"archive/host{i}/000001.bundle" for i in range(20)]
    assert [target.get(ArchiveGetRequest(ref=r)).body for r in refs] == [r.body for r in requests]
    assert len(target.list()) == 20


def test_names_with_bundles_is_one_listing_of_the_range_asked(aws: Aws) -> None:
    from certman.contracts.archive import SupportsNameListing

    target = store(aws, "s3")
    assert isinstance(target, SupportsNameListing)
    target.put_many(
        [
            ArchivePutRequest(name=name, revision=1, body=b"bundle")
            for name in ("alpha", "web", "webby", "web2", "zulu")
        ]
    )
    target.s3.put_object(Bucket=BUCKET, Key="outside/web/000001.bundle", Body=b"x")  # no prefix
    calls = sent_params(target, "ListObjectsV2")
    asked = [f"new{i:04d}" for i in range(1000)] + ["web", "web2", "mail"]
    assert target.names_with_bundles(asked) == {"web", "web2"}
    assert len(calls) == 1  # not one request per name
    assert calls[0]["Delimiter"] == "/" and calls[0]["Prefix"] == "archive/"
    assert target.names_with_bundles(["alpha", "zulu", "webb"]) == {"alpha", "zulu"}
    assert target.names_with_bundles([]) == set()


def test_names_with_bundles_of_a_missing_bucket_is_an_archive_error(aws: Aws) -> None:
    target = store(aws, "s3", setup=False)
    with pytest.raises(ArchiveError):
        target.names_with_bundles(["web"])


def test_objects_keep_the_sse_mode_they_were_written_with_after_a_switch_to_sse_c(
    aws: Aws,
) -> None:
    old = put(store(aws, "kms"), revision=1, body=b"written with sse-kms")
    switched = store(aws, "c", setup=False)  # [archive] sse changed to "c" since
    new = put(switched, revision=2, body=b"written with sse-c")
    gets = sent_params(switched, "GetObject")
    assert switched.get(ArchiveGetRequest(ref=old)).body == b"written with sse-kms"
    assert switched.head(old)["ServerSideEncryption"] == "aws:kms"
    assert switched.get(ArchiveGetRequest(ref=new)).body == b"written with sse-c"
    assert "SSECustomerKey" not in gets[0] and "SSECustomerKey" in gets[1]


def test_switching_to_sse_c_keeps_every_older_archive_readable(home: Path, aws: Aws) -> None:
    aws.kms_key()
    aws.bucket()
    write_config(home, aws_config(aws, sse="kms", acm=False))
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    cli.ok("issue", "web", "-d", "www.example.com")
    config = home / "certman.toml"
    config.write_text(config.read_text().replace('sse = "kms"', 'sse = "c"'))
    cli.ok("renew", "web", "--force")
    verified = cli.ok("archive", "verify").stdout
    assert "2 archived bundles present, intact and readable" in verified
    s3 = aws.client("s3")
    heads = [
        s3.head_object(Bucket=BUCKET, Key=f"archive/web/00000{n}.bundle")["Metadata"]["sse"]
        for n in (1, 2)
    ]
    assert heads == ["kms", "c"]


def test_preflight_probes_the_bucket_with_the_bundles_encryption_and_leaves_nothing(
    aws: Aws,
) -> None:
    target = store(aws, "kms")
    puts = sent_params(target, "PutObject")
    result = target.preflight(datetime.now(UTC))
    assert result.ok, result.checks
    ((check, ok, message),) = result.checks
    assert check == "s3 archive" and ok and "certman-archive" in message
    assert puts[0]["Key"] == "archive/.certman-preflight"
    assert puts[0]["ServerSideEncryption"] == "aws:kms"
    assert puts[0]["SSEKMSKeyId"] == "alias/certman"
    assert target.list() == [], "the probe is deleted again"


def probe_versions(target: S3ArchiveStore) -> list[tuple[str, str]]:
    """Every version and delete marker of the probe's key: (kind, version id)."""
    listed = target.s3.list_object_versions(Bucket=BUCKET, Prefix="archive/.certman-preflight")
    return [("version", v["VersionId"]) for v in listed.get("Versions", [])] + [
        ("marker", m["VersionId"]) for m in listed.get("DeleteMarkers", [])
    ]


@pytest.mark.parametrize("sse", ["s3", "kms", "c"])
def test_preflight_leaves_no_version_or_delete_marker_in_a_versioned_bucket(
    aws: Aws, sse: str
) -> None:
    target = store(aws, sse, versioned=True)
    ref = put(target)  # a bundle already there, which must stay as it is
    for _ in range(3):
        result = target.preflight(datetime.now(UTC))
        assert result.ok, result.checks
        assert "stays" not in result.checks[0][2]
    assert probe_versions(target) == []
    assert target.list() == ["archive/web/000001.bundle"]
    assert target.get(ArchiveGetRequest(ref=ref)).body == b"bundle"


def test_preflight_leaves_nothing_in_a_bucket_whose_versioning_is_suspended(aws: Aws) -> None:
    target = store(aws, "s3", versioned=True)
    target.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    assert target.preflight(datetime.now(UTC)).ok
    assert probe_versions(target) == []


def test_preflight_uploads_no_probe_where_object_lock_would_retain_it(aws: Aws) -> None:
    aws.kms_key()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    target = store(aws, "s3", setup=False)
    result = target.preflight(datetime.now(UTC))
    assert result.ok and "no probe was uploaded" in result.checks[0][2]
    assert probe_versions(target) == []


def test_preflight_fails_on_a_missing_bucket_or_a_refused_upload(aws: Aws) -> None:
    target = store(aws, "s3", setup=False)
    missing = target.preflight(datetime.now(UTC))
    assert not missing.ok and "create the bucket" in missing.checks[0][2]
    aws.bucket()
    Fault(target.s3, "PutObject", "AccessDenied", status=403)
    denied = target.preflight(datetime.now(UTC))
    assert not denied.ok and "denied s3:PutObject" in denied.checks[0][2]


@pytest.mark.parametrize("status", [403, 400])
def test_a_head_refused_without_a_body_is_the_denied_case(aws: Aws, status: int) -> None:
    target = store(aws, "s3")
    ref = put(target)
    Fault(target.s3, "HeadObject", "", status=status, bare=True)
    with pytest.raises(IntegrityError) as caught:
        target.head(ref)
    assert "grant s3:GetObject on it to the IAM identity" in caught.value.message
    assert f"({status}: " in caught.value.message
    assert caught.value.retryable
    if status == 400:
        assert "SSE-C object, its customer key is missing or wrong" in caught.value.message


def test_a_disabled_sse_kms_key_names_the_archive_setting(aws: Aws) -> None:
    target = store(aws, "kms")
    Fault(target.s3, "PutObject", "KMS.DisabledException")
    with pytest.raises(ArchiveError) as caught:
        put(target)
    message = caught.value.message
    assert message.startswith("KMS key alias/certman is disabled")
    assert "[archive] kms_key_id" in message and "[kms] key_id" not in message
