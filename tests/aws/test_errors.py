"""Every AWS failure reaches the operator as one clear sentence, and nothing is half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import botocore.endpoint
import pytest
from sqlmodel import select

from certman.aws.clients import AwsClients
from certman.aws.kms import KmsKeyWrapper
from certman.config import load_config
from certman.errors import ConfigError, DeployError, KeyWrapError
from certman.inventory.tables import ManagedCertificate, Revision
from certman.models import EncryptionContext, KeyType
from certman.service.checks import run_preflight
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime
from tests.aws.conftest import REGION, Aws
from tests.aws.faults import Fault
from tests.conftest import Cli

CTX = EncryptionContext(certificate="web", revision=1, purpose="private-key")


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry back-off delays, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", delays.append)
    return delays


def kms_client(aws: Aws, attempts: int) -> object:
    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=attempts)
    return clients.client("kms")


def spec(name: str = "web", targets: tuple[str, ...] = ()) -> IssueSpec:
    return IssueSpec(
        name=name,
        domains=("www.example.com",),
        issuer="default",
        key_type=KeyType.EC_P256,
        validity=timedelta(days=30),
        targets=targets,
    )


def revision_row(rt: Runtime, name: str = "web") -> Revision:
    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate).where(ManagedCertificate.name == name)).one()
        return session.exec(select(Revision).where(Revision.certificate_id == cert.id)).one()


def objects(aws: Aws) -> list[str]:
    answer = aws.client("s3").list_objects_v2(Bucket="certman-archive")
    return [o["Key"] for o in answer.get("Contents", [])]


@pytest.fixture
def rt(aws_runtime: Runtime, aws: Aws) -> Iterator[Runtime]:
    """The home's runtime with clients that retry throttling up to 3 attempts."""
    aws_runtime.aws = AwsClients(  # type: ignore[misc]
        region=REGION, endpoint_url=aws.endpoint_url, max_attempts=3
    )
    yield aws_runtime


def test_throttling_is_retried_with_backoff_by_botocore(aws: Aws, sleeps: list[float]) -> None:
    aws.kms_key()
    kms = kms_client(aws, attempts=3)
    fault = Fault(kms, "GenerateDataKey", "ThrottlingException", times=2)
    sealed = KmsKeyWrapper(kms=kms, key_id="alias/certman").wrap(b"secret", CTX)
    assert sealed.wrapper == "aws-kms"
    assert fault.calls == 3 and len(sleeps) == 2  # two back-offs, then the answer


def test_throttling_that_persists_is_retryable_and_the_revision_waits(
    rt: Runtime, aws: Aws, sleeps: list[float]
) -> None:
    Fault(rt.aws.client("kms"), "GenerateDataKey", "ThrottlingException")
    lifecycle = Lifecycle(rt)
    lifecycle.plan(spec())
    with pytest.raises(KeyWrapError) as caught:
        lifecycle.advance("web")
    assert caught.value.retryable
    assert "throttled kms:GenerateDataKey" in caught.value.message
    rev = revision_row(rt)
    assert rev.state == "planned" and rev.sealed_key is None
    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate)).one()
    assert cert.next_attempt_at is not None and cert.status == "pending"


def test_a_disabled_kms_key_stops_the_issuance_before_anything_is_written(
    rt: Runtime, aws: Aws
) -> None:
    # moto still encrypts with a disabled key; AWS answers DisabledException
    Fault(rt.aws.client("kms"), "GenerateDataKey", "DisabledException", times=1)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(spec(targets=("acm",)))
    with pytest.raises(KeyWrapError, match=r"is disabled .*enable it") as caught:
        lifecycle.advance("web")
    assert caught.value.retryable, "enabling the key fixes it: the revision waits for that"
    rev = revision_row(rt)
    assert rev.state == "planned" and rev.sealed_key is None and rev.archive_location is None
    assert objects(aws) == []
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []
    # the key enabled again: the same revision goes on
    assert lifecycle.renew("web").state == "active"
    assert revision_row(rt).number == 1


def test_a_disabled_kms_key_is_reported_by_doctor(aws_cli: Cli, aws: Aws) -> None:
    kms = aws.client("kms")
    kms.disable_key(KeyId=kms.describe_key(KeyId="alias/certman")["KeyMetadata"]["KeyId"])
    result = aws_cli("doctor")
    assert result.exit_code == 1
    assert "Disabled" in result.stdout and "enable it" in result.stdout


def test_access_denied_on_import_keeps_the_issued_revision_for_a_resume(
    rt: Runtime, aws: Aws
) -> None:
    fault = Fault(rt.aws.client("acm"), "ImportCertificate", "AccessDeniedException", times=1)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(spec(targets=("acm",)))
    with pytest.raises(DeployError, match=r"denied acm:ImportCertificate .*grant") as caught:
        lifecycle.advance("web")
    assert "Traceback" not in caught.value.message
    assert caught.value.retryable
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []
    rev = revision_row(rt)
    assert rev.state == "archived" and rev.deploy_state is None and rev.serial
    with rt.session() as session:
        cert = session.exec(select(ManagedCertificate)).one()
    assert cert.acm_arn is None and cert.next_attempt_at is not None
    # the permission granted: `certman renew web` resumes the same revision, not a new one
    assert lifecycle.renew("web").state == "active"
    assert fault.calls == 2
    resumed = revision_row(rt)
    assert (resumed.number, resumed.serial) == (1, rev.serial)
    (summary,) = aws.client("acm").list_certificates()["CertificateSummaryList"]
    held = aws.client("acm").describe_certificate(CertificateArn=summary["CertificateArn"])
    assert format(int(held["Certificate"]["Serial"]), "x") == rev.serial


def test_a_missing_bucket_keeps_the_issued_revision_and_renew_resumes_it(
    aws_cli: Cli, aws: Aws
) -> None:
    aws.client("s3").delete_bucket(Bucket="certman-archive")
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm")
    assert result.exit_code == 1
    assert "s3://certman-archive/" in result.stderr
    assert "create the bucket or fix [archive] bucket" in result.stderr
    (issued,) = json.loads(aws_cli.ok("show", "web", "--json").stdout)["revisions"]
    assert issued["state"] == "issued" and issued["serial"] and issued["archive"] is None
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []
    aws.bucket()
    aws_cli.ok("renew", "web")
    view = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert [(r["revision"], r["state"]) for r in view["revisions"]] == [(1, "active")]
    assert view["serial"] == issued["serial"], "resumed, not issued again"
    assert objects(aws) == ["archive/web/000001.bundle"]
    held = aws.client("acm").describe_certificate(CertificateArn=view["acm_arn"])["Certificate"]
    assert format(int(held["Serial"]), "x") == issued["serial"]


def test_rejected_credentials_name_the_fix(aws: Aws) -> None:
    aws.kms_key()
    kms = kms_client(aws, attempts=1)
    Fault(kms, "GenerateDataKey", "UnrecognizedClientException")
    with pytest.raises(KeyWrapError, match=r"rejected the credentials .*renew them"):
        KmsKeyWrapper(kms=kms, key_id="alias/certman").wrap(b"x", CTX)


def test_an_unreachable_endpoint_is_retryable(aws: Aws) -> None:
    clients = AwsClients(region=REGION, endpoint_url="http://127.0.0.1:9", max_attempts=1)
    wrapper = KmsKeyWrapper(kms=clients.client("kms"), key_id="alias/certman")
    with pytest.raises(KeyWrapError, match=r"Cannot reach AWS .*endpoint_url") as caught:
        wrapper.wrap(b"x", CTX)
    assert caught.value.retryable


def test_an_unknown_profile_is_a_config_error(aws: Aws) -> None:
    with pytest.raises(ConfigError, match=r"profile 'nope' .*does not exist"):
        AwsClients(region=REGION, profile="nope").client("kms")


def test_a_missing_kms_key_names_the_setting(aws: Aws) -> None:
    wrapper = KmsKeyWrapper(kms=kms_client(aws, attempts=1), key_id="alias/nope")
    with pytest.raises(KeyWrapError, match=r"alias/nope does not exist .*set \[kms\] key_id"):
        wrapper.wrap(b"x", CTX)


def test_messages_never_carry_the_secret(aws: Aws) -> None:
    aws.kms_key()
    kms = kms_client(aws, attempts=1)
    Fault(kms, "Decrypt", "AccessDeniedException")
    wrapper = KmsKeyWrapper(kms=kms, key_id="alias/certman")
    sealed = wrapper.wrap(b"TOP-SECRET-VALUE", CTX)
    with pytest.raises(KeyWrapError) as caught:
        wrapper.unwrap(sealed, CTX)
    assert "TOP-SECRET" not in caught.value.message
    assert sealed.encrypted_data_key.hex() not in caught.value.message


def imported(aws_cli: Cli) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")


def test_acm_import_without_credentials_names_the_fix(
    aws_cli: Cli, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported(aws_cli)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = aws_cli("acm", "import", "web")
    assert result.exit_code == 1
    assert "No usable AWS credentials for acm:DescribeCertificate" in result.stderr
    assert "unexpectedly" not in result.stderr and "Traceback" not in result.stderr


def test_acm_import_with_an_unreachable_endpoint_names_the_endpoint(aws_cli: Cli, aws: Aws) -> None:
    imported(aws_cli)
    before = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    config = aws_cli.home / "certman.toml"
    config.write_text(config.read_text().replace(aws.endpoint_url, "http://127.0.0.1:9"))
    result = aws_cli("acm", "import", "web")
    assert result.exit_code == 1
    assert "Cannot reach AWS for acm:DescribeCertificate" in result.stderr
    assert "endpoint_url" in result.stderr and "unexpectedly" not in result.stderr
    config.write_text(config.read_text().replace("http://127.0.0.1:9", aws.endpoint_url))
    after = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert after["acm_arn"] == before["acm_arn"], "an unreachable ACM is not a deleted ARN"


def test_a_malformed_region_is_a_config_error_and_nothing_is_issued(aws_cli: Cli, aws: Aws) -> None:
    config = aws_cli.home / "certman.toml"
    config.write_text(config.read_text().replace(f'region = "{REGION}"', 'region = "us east 1"'))
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm")
    assert result.exit_code == 2
    assert "aws.region = 'us east 1'" in result.stderr and str(config) in result.stderr
    assert "InvalidRegion" not in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert aws_cli("acm", "sync").exit_code == 2


def test_a_malformed_target_region_names_the_target(aws_cli: Cli, aws: Aws) -> None:
    config = aws_cli.home / "certman.toml"
    config.write_text(config.read_text() + '\n[targets.west]\ntype = "acm"\nregion = "us west 2"\n')
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "west")
    assert result.exit_code == 2
    assert "targets.west.region = 'us west 2'" in result.stderr and str(config) in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []


def test_a_malformed_listener_target_region_names_the_target(aws_cli: Cli, aws: Aws) -> None:
    config = aws_cli.home / "certman.toml"
    config.write_text(
        config.read_text()
        + '\n[targets.lb]\ntype = "elbv2"\nregion = "us west 2"\n'
        + 'listener_arns = ["arn:aws:elasticloadbalancing:us-west-2:1:listener/app/x/1/2"]\n'
    )
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "lb")
    assert result.exit_code == 2
    assert "targets.lb.region = 'us west 2'" in result.stderr and str(config) in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []


def test_an_unknown_key_in_an_acm_target_is_named(aws_cli: Cli) -> None:
    config = aws_cli.home / "certman.toml"
    original = config.read_text()
    config.write_text(original + '\n[targets.west]\ntype = "acm"\nregoin = "x"\n')
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "west")
    assert result.exit_code == 2
    assert f"Unknown key targets.west.regoin in {config}" in result.stderr
    assert "an acm target takes: acm_strategy, region" in result.stderr
    config.write_text(original)  # refused at load now, `list` too
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []


@pytest.mark.parametrize("region", ["us west 2", ""])
def test_acm_sync_refuses_a_malformed_region_option(aws_cli: Cli, region: str) -> None:
    result = aws_cli("acm", "sync", "--region", region)
    assert result.exit_code == 2 and f"--region {region!r}" in result.stderr
    events = json.loads(aws_cli.ok("audit", "list", "--json").stdout)
    assert not [e for e in events if e["action"] == "acm.sync"]


def test_an_endpoint_url_without_a_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"aws.endpoint_url = 'localhost:5000' in /etc/c.toml"):
        AwsClients.from_settings({"endpoint_url": "localhost:5000"}, source="/etc/c.toml")


def set_archive(cli: Cli, key: str, value: str) -> None:
    config = cli.home / "certman.toml"
    text = config.read_text()
    old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
    config.write_text(text.replace(old, f'{key} = "{value}"'))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("bucket", "Bad Bucket!", "archive.bucket = 'Bad Bucket!'"),
        ("bucket", "ab", "archive.bucket = 'ab'"),
        ("prefix", "/archive/", "archive.prefix = '/archive/'"),
        ("prefix", "a//b", "archive.prefix = 'a//b'"),
        ("prefix", "../up", "archive.prefix = '../up'"),
    ],
)
def test_a_malformed_bucket_or_prefix_is_refused_before_anything_is_issued(
    aws_cli: Cli, aws: Aws, key: str, value: str, expected: str
) -> None:
    set_archive(aws_cli, key, value)
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm")
    assert result.exit_code == 2, result.stderr
    assert expected in result.stderr and str(aws_cli.home / "certman.toml") in result.stderr
    assert "bug in certman" not in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    events = json.loads(aws_cli.ok("audit", "list", "--json").stdout)
    assert not [e for e in events if e["action"].startswith("certificate.")]
    assert aws.client("acm").list_certificates()["CertificateSummaryList"] == []


def test_a_prefix_without_a_trailing_slash_is_a_folder(aws_cli: Cli, aws: Aws) -> None:
    set_archive(aws_cli, "prefix", "certs/archive")
    aws_cli.ok("issue", "web", "-d", "www.example.com")
    assert objects(aws) == ["certs/archive/web/000001.bundle"]


def test_parameters_botocore_refuses_are_not_blamed_on_certman(aws: Aws) -> None:
    from certman.aws.s3 import S3ArchiveStore
    from certman.contracts.archive import ArchivePutRequest
    from certman.errors import ArchiveError

    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)
    # built by hand: build_archive_store refuses such a name before any call
    store = S3ArchiveStore(
        s3=clients.client("s3"),
        bucket="Bad Bucket!",
        prefix="",
        sse="s3",
        key_wrapper=None,  # type: ignore[arg-type]  # SSE-S3 never seals
    )
    with pytest.raises(ArchiveError) as caught:
        store.put(ArchivePutRequest(name="web", revision=1, body=b"x"))
    assert "bug in certman" not in caught.value.message
    assert "[archive] bucket" in caught.value.message


def test_doctor_and_the_service_preflight_check_the_s3_archive(aws_cli: Cli, aws: Aws) -> None:
    line = next(x for x in aws_cli.ok("doctor").stdout.splitlines() if "s3 archive" in x)
    assert line.startswith("[ok") and "takes new bundles" in line
    assert objects(aws) == []
    aws.client("s3").delete_bucket(Bucket="certman-archive")
    result = aws_cli("doctor")
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "s3 archive" in x)
    assert "create the bucket or fix [archive] bucket" in line
    rt = Runtime(config=load_config(aws_cli.home, aws_cli.home / "certman.toml"))
    failing = [c for c in run_preflight(rt).checks if not c.ok]
    assert [c.area for c in failing] == ["archive"]
    rt.engine.dispose()


def unreachable(cli: Cli, aws: Aws) -> None:
    config = cli.home / "certman.toml"
    config.write_text(config.read_text().replace(aws.endpoint_url, "http://127.0.0.1:9"))


def test_one_shot_commands_do_not_promise_a_retry(aws_cli: Cli, aws: Aws) -> None:
    imported(aws_cli)
    unreachable(aws_cli, aws)
    for command in (("acm", "sync"), ("acm", "import", "web"), ("keys", "rotate", "--to", "local")):
        result = aws_cli(*command)
        assert result.exit_code == 1, (command, result.stderr)
        assert "Cannot reach AWS" in result.stderr and "try again later" in result.stderr
        assert "certman will retry" not in result.stderr, command


def test_keys_rotate_to_an_unknown_wrapper_blames_the_option(aws_cli: Cli) -> None:
    result = aws_cli("keys", "rotate", "--to", "foo")
    assert result.exit_code == 2
    assert "--to 'foo' is not a key wrapper" in result.stderr and "aws-kms" in result.stderr
    assert "[kms]" not in result.stderr
    events = json.loads(aws_cli.ok("audit", "list", "--json").stdout)
    assert not [e for e in events if e["action"] == "keys.rotate"]
