"""Every backend of each contract, built as the runtime builds it, against its real component.

Each backend is a certman home whose configuration selects it; the suites take the backend
from ``Runtime(config=...)`` (``.key_wrapper``, ``.archive``, ``.issuer(name)``,
``.deployer(name)``), never from a factory, so they follow the registry whatever a factory
takes. A backend lists the cases it cannot run in ``unsupported`` (case -> reason); the
suites skip those with that reason, and skip a capability case when the backend lacks the
capability protocol (``supports``). Nothing is faked: the components are the session's
moto server, SoftHSM2 token and Pebble (tests/components/fixtures.py), and nginx.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from certman.config import load_config
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.components.fixtures import PIN, TOKEN
from tests.components.moto_server import MotoServer
from tests.components.nginx import Nginx, start_nginx
from tests.components.pebble import Pebble, free_port
from tests.components.softhsm import SoftHsm

REGION = "us-east-1"


@dataclass
class Backend:
    """One backend under test: its configured type, the home's runtime, what it cannot do."""

    type_name: str
    runtime: Runtime
    unsupported: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def skip_unless(self, case: str) -> None:
        if case in self.unsupported:
            pytest.skip(f"{self.type_name}: {self.unsupported[case]}")


def make_home(directory: Path, config: str = "") -> Runtime:
    """An initialised home with ``config`` as its certman.toml; its runtime."""
    home = directory / "home"
    home.mkdir(mode=0o700)
    if config:
        (home / "certman.toml").write_text(config)
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    return runtime_of(home)


def runtime_of(home: Path, config_file: str = "certman.toml") -> Runtime:
    return Runtime(config=load_config(home, home / config_file))


def dispose(runtime: Runtime) -> None:
    if "engine" in runtime.__dict__:
        runtime.engine.dispose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- the components, for one suite module at a time -----------------------------------------


@dataclass
class AwsAccount:
    """The session's moto server with dummy credentials; resources named per test module."""

    endpoint_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

    def section(self) -> str:
        return f'[aws]\nregion = "{REGION}"\nendpoint_url = "{self.endpoint_url}"\n'

    def kms_key(self) -> str:
        """A new KMS key; its alias."""
        alias = f"alias/{unique('conformance')}"
        kms = self.client("kms")
        key_id = kms.create_key(Description="certman conformance")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        return alias

    def key_arn(self, alias: str) -> str:
        return str(self.client("kms").describe_key(KeyId=alias)["KeyMetadata"]["Arn"])

    def bucket(self) -> str:
        name = unique("conformance")
        self.client("s3").create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="module")
def aws_account(request: pytest.FixtureRequest) -> Iterator[AwsAccount]:
    """Requested only by the AWS backends, so the others need no moto server."""
    moto: MotoServer = request.getfixturevalue("moto")
    nowhere = Path(str(request.getfixturevalue("tmp_path_factory").getbasetemp())) / "no-aws"
    with pytest.MonkeyPatch.context() as patch:
        for var, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(nowhere),
            "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",  # moto answers what it lacks with HTTP 500
        }.items():
            patch.setenv(var, value)
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(var, raising=False)
        yield AwsAccount(endpoint_url=moto.endpoint_url)


@pytest.fixture(scope="module")
def hsm(request: pytest.FixtureRequest) -> Iterator[SoftHsm]:
    softhsm: SoftHsm = request.getfixturevalue("softhsm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTMAN_HSM_PIN", PIN)
        yield softhsm


def pkcs11_section(softhsm: SoftHsm, key_label: str) -> str:
    return (
        '[kms]\ntype = "pkcs11"\n'
        f'module = "{softhsm.module}"\ntoken_label = "{TOKEN}"\nkey_label = "{key_label}"\n'
    )


# --- key wrappers ---------------------------------------------------------------------------


@dataclass
class KeyWrapperBackend(Backend):
    """``key_id`` is what the wrapper must record; ``next_key`` builds the same backend
    configured with a newer wrapping key (a rotated master key, another KMS key, another
    HSM key), through the runtime again."""

    key_id: str = ""
    next_key: Callable[[], Runtime] | None = None


def _local_key_wrapper(directory: Path) -> KeyWrapperBackend:
    runtime = make_home(directory)
    home = runtime.config.home

    def next_key() -> Runtime:
        # The same master key file, copied and rotated: it opens the old records and seals
        # under a newer version, while the suite's home keeps its own file unchanged.
        from certman.contracts.key_wrapper import SupportsVersions
        from certman.keywrap.dispatch import sealing_wrapper

        shutil.copy(runtime.config.master_key_path, home / "master-next.key")
        (home / "next.toml").write_text(
            '[kms]\ntype = "local"\nmaster_key_file = "master-next.key"\n'
        )
        newer = runtime_of(home, "next.toml")
        wrapper = sealing_wrapper(newer.key_wrapper)
        assert isinstance(wrapper, SupportsVersions)
        wrapper.rotate()
        return newer

    return KeyWrapperBackend("local", runtime, key_id="local:v1", next_key=next_key)


def _kms_key_wrapper(directory: Path, aws: AwsAccount) -> KeyWrapperBackend:
    alias = aws.kms_key()
    runtime = make_home(directory, aws.section() + f'[kms]\ntype = "aws-kms"\nkey_id = "{alias}"\n')
    home = runtime.config.home

    def next_key() -> Runtime:
        newer = aws.kms_key()
        (home / "next.toml").write_text(
            aws.section() + f'[kms]\ntype = "aws-kms"\nkey_id = "{newer}"\n'
        )
        return runtime_of(home, "next.toml")

    return KeyWrapperBackend("aws-kms", runtime, key_id=aws.key_arn(alias), next_key=next_key)


def _pkcs11_key_wrapper(directory: Path, softhsm: SoftHsm) -> KeyWrapperBackend:
    from certman.contracts import supports
    from certman.contracts.key_wrapper import SupportsKeyCreation
    from certman.keywrap.dispatch import sealing_wrapper
    from certman.keywrap.pkcs11 import key_uri

    label = unique("conformance")
    runtime = make_home(directory, pkcs11_section(softhsm, label))  # init creates the key
    home = runtime.config.home

    def next_key() -> Runtime:
        (home / "next.toml").write_text(pkcs11_section(softhsm, label + "-next"))
        newer = runtime_of(home, "next.toml")
        wrapper = sealing_wrapper(newer.key_wrapper)
        assert supports(wrapper, SupportsKeyCreation)
        wrapper.ensure_key()  # what `certman init` does for a new HSM key
        return newer

    return KeyWrapperBackend("pkcs11", runtime, key_id=key_uri(TOKEN, label), next_key=next_key)


@pytest.fixture(scope="module", params=["local", "aws-kms", "pkcs11"])
def key_wrapper_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyWrapperBackend]:
    directory = tmp_path_factory.mktemp(f"kw-{request.param}")
    if request.param == "local":
        backend = _local_key_wrapper(directory)
    elif request.param == "aws-kms":
        backend = _kms_key_wrapper(directory, request.getfixturevalue("aws_account"))
    else:
        backend = _pkcs11_key_wrapper(directory, request.getfixturevalue("hsm"))
    yield backend
    dispose(backend.runtime)


# --- archives -------------------------------------------------------------------------------


@dataclass
class ArchiveBackend(Backend):
    """``tamper(location, body)`` replaces a stored object behind the store's back."""

    tamper: Callable[[str, bytes], None] | None = None


def _local_archive(directory: Path) -> ArchiveBackend:
    runtime = make_home(directory)

    def tamper(location: str, body: bytes) -> None:
        runtime.archive.path_of(location).write_bytes(body)  # type: ignore[attr-defined]

    return ArchiveBackend("local", runtime, tamper=tamper)


def _s3_archive(directory: Path, aws: AwsAccount, sse: str) -> ArchiveBackend:
    alias, bucket = aws.kms_key(), aws.bucket()
    runtime = make_home(
        directory,
        aws.section()
        + f'[archive]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "archive/"\n'
        + f'sse = "{sse}"\nkms_key_id = "{alias}"\n',
    )
    s3 = aws.client("s3")

    def tamper(location: str, body: bytes) -> None:
        # Keep what the object says about itself (its metadata); change only its bytes.
        # moto ignores SSE-C (COMPONENTS.md), so the object can be rewritten without its key.
        head = s3.head_object(Bucket=bucket, Key=location)
        s3.put_object(Bucket=bucket, Key=location, Body=body, Metadata=head.get("Metadata", {}))

    return ArchiveBackend(f"s3 (sse={sse})", runtime, tamper=tamper)


@pytest.fixture(scope="module", params=["local", "s3-sse-s3", "s3-sse-kms", "s3-sse-c"])
def archive_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArchiveBackend]:
    directory = tmp_path_factory.mktemp(f"archive-{request.param}")
    if request.param == "local":
        backend = _local_archive(directory)
    else:
        sse = {"s3-sse-s3": "s3", "s3-sse-kms": "kms", "s3-sse-c": "c"}[request.param]
        backend = _s3_archive(directory, request.getfixturevalue("aws_account"), sse)
    yield backend
    dispose(backend.runtime)


# --- issuers --------------------------------------------------------------------------------


@dataclass
class IssuerBackend(Backend):
    """``issuer_name`` is the [issuers.NAME] (or CA) to ask the runtime for; ``roots_pem``
    the trust anchors its chains must verify to; ``revoked(serial)`` asks the CA itself."""

    issuer_name: str = ""
    roots_pem: Callable[[], bytes] | None = None
    revoked: Callable[[int], bool] | None = None


def _private_ca(directory: Path) -> IssuerBackend:
    runtime = make_home(directory)

    def roots() -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        issuer: Any = runtime.issuer("default")
        return bytes(issuer.root_certificate.public_bytes(Encoding.PEM))

    return IssuerBackend(
        "private-ca",
        runtime,
        issuer_name="default",
        roots_pem=roots,
        unsupported={
            "renewal-info": "a private CA has no ARI: renewal follows the policy alone",
        },
    )


def _acme_table(directory_url: str, pebble: Pebble) -> str:
    return (
        '[issuers.pebble]\ntype = "acme"\n'
        f'directory = "{directory_url}"\nca_bundle = "{pebble.ca_bundle}"\n'
        f'http_address = "127.0.0.1:{pebble.http_port}"\n'
    )


def _acme(directory: Path, pebble: Pebble, directory_url: str, kind: str) -> IssuerBackend:
    runtime = make_home(directory, _acme_table(directory_url, pebble))
    return IssuerBackend(
        kind,
        runtime,
        issuer_name="pebble",
        roots_pem=lambda: pebble.root_pem,
        revoked=lambda serial: pebble.cert_status(serial).get("Status") == "Revoked",
        unsupported={"crl": "an ACME CA publishes its own CRLs; certman signs none for it"},
    )


@pytest.fixture(scope="module", params=["private-ca", "acme", "acme-ari"])
def issuer_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IssuerBackend]:
    directory = tmp_path_factory.mktemp(f"issuer-{request.param}")
    ari_server = None
    if request.param == "private-ca":
        backend = _private_ca(directory)
    else:
        pebble: Pebble = request.getfixturevalue("pebble")
        if request.param == "acme":  # Pebble 2.4 itself offers no renewalInfo
            backend = _acme(directory, pebble, pebble.directory_url, "acme (Pebble)")
        else:
            from tests.acme.ari_server import AriServer

            ari_server = AriServer(pebble, free_port()).start()
            backend = _acme(directory, pebble, ari_server.directory_url, "acme (Pebble + ARI)")
            backend.extra["ari"] = ari_server
    yield backend
    dispose(backend.runtime)
    if ari_server is not None:
        ari_server.stop()


# --- deployers ------------------------------------------------------------------------------


@dataclass
class DeployerBackend(Backend):
    """``target`` is the [targets.NAME] to ask the runtime for; ``served(unit)`` asks the
    real component which serial the unit serves (hex), or the ARN it holds for ACM."""

    target: str = ""
    prepare: Callable[[Any], dict[str, Any]] | None = None
    served: Callable[[str, dict[str, str]], str] | None = None


def _file_deployer(directory: Path, nginx: Nginx) -> DeployerBackend:
    from cryptography import x509

    runtime = make_home(
        directory,
        "[targets.web]\n"
        'type = "file"\n'
        f'fullchain_path = "{nginx.fullchain}"\nkey_path = "{nginx.key}"\n'
        f'reload_command = "{nginx.reload_command}"\nprobe = "{nginx.endpoint}"\n'
        'probe_timeout = "2s"\n',
    )

    def served(unit: str, state: dict[str, str]) -> str:
        from certman.deploy.probe import Endpoint, served_serial

        nginx.wait_settled()
        return served_serial(Endpoint.parse(nginx.endpoint, where="test"), "www.example.com")

    def on_disk() -> str:
        leaf = x509.load_pem_x509_certificates(nginx.fullchain.read_bytes())[0]
        return format(leaf.serial_number, "x")

    backend = DeployerBackend("file (nginx)", runtime, target="web", served=served)
    backend.extra["on_disk"] = on_disk
    return backend


@pytest.fixture(scope="module")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    server = start_nginx(tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


def _acm_deployer(directory: Path, aws: AwsAccount) -> DeployerBackend:
    runtime = make_home(directory, aws.section() + '[targets.acm]\ntype = "acm"\n')
    acm = aws.client("acm")

    def served(unit: str, state: dict[str, str]) -> str:
        serial = acm.describe_certificate(CertificateArn=state["acm_arn"])["Certificate"]["Serial"]
        text = str(serial)  # moto answers in decimal, AWS as colon-separated hex
        return format(int(text), "x") if text.isdigit() else text.replace(":", "").lower()

    return DeployerBackend("acm", runtime, target="acm", served=served)


@pytest.fixture(scope="module", params=["file", "acm"])
def deployer_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployerBackend]:
    directory = tmp_path_factory.mktemp(f"deployer-{request.param}")
    if request.param == "file":
        backend = _file_deployer(directory, request.getfixturevalue("nginx_server"))
    else:
        backend = _acm_deployer(directory, request.getfixturevalue("aws_account"))
    yield backend
    dispose(backend.runtime)
