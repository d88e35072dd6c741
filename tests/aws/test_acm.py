"""The ACM target against moto: chain split, same ARN, tags, verify, rollback, lost ARNs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509

from certman.aws.acm import AcmDeployer
from certman.aws.acm_certs import split_for_acm
from certman.aws.clients import AwsClients
from certman.contracts.deployer import RollbackRequest, VerifyRequest
from certman.errors import DeployError
from tests.aws.conftest import REGION, Aws
from tests.aws.faults import Fault
from tests.aws.pki import TestCA
from tests.conftest import Cli


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


def deployer(aws: Aws, region: str = REGION) -> AcmDeployer:
    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)
    return AcmDeployer(acm=clients.client("acm", region), name="acm", region=region)


def record(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the client makes."""
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        f"before-parameter-build.acm.{operation}", lambda params, **_: seen.append(dict(params))
    )
    return seen


def tags(target: AcmDeployer, arn: str) -> dict[str, str]:
    answer = target.acm.list_tags_for_certificate(CertificateArn=arn)
    return {t["Key"]: t["Value"] for t in answer["Tags"]}


def serial_at(target: AcmDeployer, arn: str) -> str:
    return target._describe(arn, "web")["serial"]


def test_the_chain_is_split_leaf_alone_then_its_issuers(aws: Aws, ca: TestCA) -> None:
    leaf = ca.leaf()
    target = deployer(aws)
    imports = record(target.acm, "ImportCertificate")
    # a full chain where the leaf is expected, and a chain that repeats the leaf
    request = leaf.request(
        certificate_pem=leaf.certificate_pem + ca.chain_pem,
        chain_pem=leaf.certificate_pem + ca.full_chain_pem,
    )
    arn = target.deploy(request).state["acm_arn"]
    sent = imports[0]
    assert x509.load_pem_x509_certificates(sent["Certificate"]) == [leaf.certificate]
    assert x509.load_pem_x509_certificates(sent["CertificateChain"]) == [ca.intermediate, ca.root]
    stored = target.acm.get_certificate(CertificateArn=arn)
    assert x509.load_pem_x509_certificate(stored["Certificate"].encode()) == leaf.certificate


def test_split_for_acm_keeps_a_plain_leaf_and_chain_as_they_are(ca: TestCA) -> None:
    leaf = ca.leaf()
    assert split_for_acm(leaf.certificate_pem, ca.chain_pem) == (leaf.certificate_pem, ca.chain_pem)


def test_a_renewal_reimports_to_the_same_arn_and_puts_the_tags_back(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    first = target.deploy(ca.leaf().request(revision=1)).state
    assert first["created"] == "yes"
    assert tags(target, first["acm_arn"]) == {"certman:name": "web", "certman:revision": "1"}
    renewed = ca.leaf()
    response = target.deploy(renewed.request(revision=2, acm_arn=first["acm_arn"]))
    assert response.changed and response.state["acm_arn"] == first["acm_arn"]
    assert response.state["created"] == "no"
    assert serial_at(target, first["acm_arn"]) == renewed.serial
    assert tags(target, first["acm_arn"]) == {"certman:name": "web", "certman:revision": "2"}
    check = target.verify(
        VerifyRequest(
            name="web", revision=2, certificate_pem=renewed.certificate_pem, state=response.state
        )
    )
    assert check.ok, check.message
    assert len(target.acm.list_certificates()["CertificateSummaryList"]) == 1


def test_verify_fails_when_acm_holds_another_certificate(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    state = target.deploy(ca.leaf().request()).state
    other = ca.leaf()
    check = target.verify(
        VerifyRequest(name="web", revision=1, certificate_pem=other.certificate_pem, state=state)
    )
    assert not check.ok and other.serial in check.message


def test_rollback_reimports_the_previous_revision_once(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    old, new = ca.leaf(), ca.leaf()
    arn = target.deploy(old.request(revision=1)).state["acm_arn"]
    state = target.deploy(new.request(revision=2, acm_arn=arn)).state
    imports = record(target.acm, "ImportCertificate")
    rollback = RollbackRequest(name="web", revision=2, state=state, previous=old.material(1))
    target.rollback(rollback)
    assert serial_at(target, arn) == old.serial
    assert tags(target, arn)["certman:revision"] == "1"
    target.rollback(rollback)  # idempotent: ACM already holds revision 1
    assert len(imports) == 1


def test_rollback_of_a_first_import_deletes_the_new_arn(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    state = target.deploy(ca.leaf().request()).state
    target.rollback(RollbackRequest(name="web", revision=1, state=state))
    assert target.acm.list_certificates()["CertificateSummaryList"] == []


def test_a_deploy_that_fails_after_the_import_is_still_rolled_back(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    old, new = ca.leaf(), ca.leaf()
    arn = target.deploy(old.request(revision=1)).state["acm_arn"]
    Fault(target.acm, "AddTagsToCertificate", "AccessDeniedException", times=1)
    with pytest.raises(DeployError, match="denied acm:AddTagsToCertificate"):
        target.deploy(new.request(revision=2, acm_arn=arn))
    assert serial_at(target, arn) == new.serial  # re-imported, then tagging failed
    # the rollout only knows the state of deploys that returned: the target remembers
    target.rollback(RollbackRequest(name="web", revision=2, state={}, previous=old.material(1)))
    assert serial_at(target, arn) == old.serial
    target.forget("web", 2)


def test_the_same_revision_is_never_imported_twice_even_when_its_arn_was_lost(
    aws: Aws, ca: TestCA
) -> None:
    target = deployer(aws)
    leaf = ca.leaf()
    imports = record(target.acm, "ImportCertificate")
    arn = target.deploy(leaf.request()).state["acm_arn"]
    # a crash between the import and recording its ARN: the retry knows no ARN
    again = target.deploy(leaf.request())
    assert not again.changed and again.state["acm_arn"] == arn
    assert again.state["created"] == "yes", "made for this revision: a rollback deletes it"
    assert len(imports) == 1


def test_a_new_certificate_gets_a_new_arn(aws: Aws, ca: TestCA) -> None:
    target = deployer(aws)
    first = target.deploy(ca.leaf().request(name="web")).state["acm_arn"]
    second = target.deploy(ca.leaf().request(name="web")).state["acm_arn"]
    assert first != second, "only an ARN holding this very revision is adopted"


def test_a_target_in_a_second_region_keeps_its_own_arn(aws: Aws, ca: TestCA) -> None:
    east, west = deployer(aws), deployer(aws, "us-west-2")
    east_arn = east.deploy(ca.leaf().request(revision=1)).state["acm_arn"]
    west_arn = west.deploy(ca.leaf().request(revision=1, acm_arn=east_arn)).state["acm_arn"]
    assert ":us-west-2:" in west_arn
    renewed = ca.leaf()
    # the inventory keeps one ARN (the first region's); the second is found by its tag
    again = west.deploy(renewed.request(revision=2, acm_arn=east_arn)).state["acm_arn"]
    assert again == west_arn
    assert serial_at(west, west_arn) == renewed.serial


def test_a_deleted_arn_is_reimported_under_a_new_arn_only_on_request(
    aws_cli: Cli, aws: Aws
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    arn = json.loads(aws_cli.ok("show", "web", "--json").stdout)["acm_arn"]
    aws.client("acm").delete_certificate(CertificateArn=arn)
    renewal = aws_cli("renew", "web", "--force")
    assert renewal.exit_code == 1
    assert (
        "deleted outside certman" in renewal.stderr and "certman acm import web" in renewal.stderr
    )
    renewed = json.loads(aws_cli.ok("show", "web", "--json").stdout)["revisions"][-1]
    assert (renewed["revision"], renewed["state"]) == (2, "archived"), "kept for a resume"
    result = aws_cli.ok("acm", "import", "web")
    assert "no longer exists" in result.stderr and "ARN changed" in result.stderr
    view = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert view["acm_arn"] and view["acm_arn"] != arn
    held = aws.client("acm").describe_certificate(CertificateArn=view["acm_arn"])["Certificate"]
    assert format(int(held["Serial"]), "x") == view["serial"]
    # the interrupted renewal resumes onto the new ARN with the serial it was issued with
    aws_cli.ok("renew", "web")
    view = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert (view["revision"], view["serial"]) == (2, renewed["serial"])
    held = aws.client("acm").describe_certificate(CertificateArn=view["acm_arn"])["Certificate"]
    assert format(int(held["Serial"]), "x") == renewed["serial"]
    assert len(aws.client("acm").list_certificates()["CertificateSummaryList"]) == 1


def test_certman_deploy_puts_the_active_revision_back_after_a_change_outside(
    aws_cli: Cli, aws: Aws, ca: TestCA
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    view = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    stranger = ca.leaf()
    acm = aws.client("acm")
    acm.import_certificate(
        CertificateArn=view["acm_arn"],
        Certificate=stranger.certificate_pem,
        PrivateKey=stranger.key_pem,
    )
    assert "web" in aws_cli.ok("acm", "sync").stdout  # drift: web ...
    aws_cli.ok("deploy", "web")
    held = acm.describe_certificate(CertificateArn=view["acm_arn"])["Certificate"]
    assert format(int(held["Serial"]), "x") == view["serial"]
    assert "drift" not in aws_cli.ok("acm", "sync").stdout
    # already there: `acm import` changes nothing in ACM
    imports = aws_cli.ok("acm", "import", "web").stdout
    assert view["acm_arn"] in imports


def p384_certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate on a P-384 key: another ACM key type than the leaves'."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.selfsigned import self_signed_pem

    return self_signed_pem(name, curve=ec.SECP384R1())


def test_a_lost_arn_is_found_among_the_leafs_key_type_and_the_search_stops_there(
    aws: Aws, ca: TestCA
) -> None:
    target = deployer(aws)
    web = [{"Key": "certman:name", "Value": "web"}]
    cert, key = p384_certificate("www.example.com")  # listed first, but not the leaf's type
    target.acm.import_certificate(Certificate=cert, PrivateKey=key, Tags=web)
    leaf = ca.leaf()
    arn = target.deploy(leaf.request()).state["acm_arn"]
    for _ in range(2):  # more candidates of the same key type, after the right one
        other = ca.leaf()
        target.acm.import_certificate(
            Certificate=other.certificate_pem, PrivateKey=other.key_pem, Tags=web
        )
    listed = record(target.acm, "ListCertificates")
    tag_reads = record(target.acm, "ListTagsForCertificate")
    again = target.deploy(leaf.request())  # a crash lost the ARN: no ARN known
    assert not again.changed and again.state["acm_arn"] == arn
    assert [call["Includes"] for call in listed] == [{"keyTypes": ["EC_prime256v1"]}]
    assert [call["CertificateArn"] for call in tag_reads] == [arn], "stops at the first match"
