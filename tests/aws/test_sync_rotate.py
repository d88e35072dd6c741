"""`certman acm sync` (unmanaged certificates, drift) and moving keys between wrappers."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlmodel import select

from certman.config import load_config
from certman.inventory.tables import Authority, ManagedCertificate, Revision
from certman.models import WrappedKey
from certman.service.acm_sync import sync_acm
from certman.service.home import init_home
from certman.service.runtime import Runtime
from tests.aws.conftest import Aws, aws_config, write_config
from tests.conftest import Cli
from tests.selfsigned import self_signed_pem as self_signed


def listing(cli: Cli) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["name"]: c for c in json.loads(cli.ok("list", "--json").stdout)}


def test_acm_sync_lists_unmanaged_certificates_with_source_acm(aws_cli: Cli, aws: Aws) -> None:
    cert, key = self_signed("legacy.example.com")
    arn = aws.client("acm").import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    out = aws_cli.ok("acm", "sync").stdout
    assert "1 new, 1 updated." in out
    rows = listing(aws_cli)
    legacy = next(r for r in rows.values() if r["acm_arn"] == arn)
    assert legacy["source"] == "acm" and legacy["domains"] == ["legacy.example.com"]
    assert legacy["status"] == "active" and legacy["not_after"]
    assert rows["web"]["source"] == "managed" and rows["web"]["drift"] is None
    # a second sync changes nothing and adds nothing
    assert "0 new, 2 updated." in aws_cli.ok("acm", "sync").stdout
    result = aws_cli("renew", legacy["name"])
    assert result.exit_code == 2 and "not managed by certman" in result.stderr


def tag_lookups(rt: Runtime, region: str = "us-east-1") -> list[str]:
    """The ARNs sync asks ListTagsForCertificate for, through the runtime's own client."""
    asked: list[str] = []
    rt.aws.client("acm", region).meta.events.register(
        "before-parameter-build.acm.ListTagsForCertificate",
        lambda params, **_: asked.append(params["CertificateArn"]),
    )
    return asked


def test_acm_sync_asks_tags_only_for_certificates_the_inventory_cannot_place(
    aws_cli: Cli, aws: Aws
) -> None:
    cert, key = self_signed("legacy.example.com")
    legacy = aws.client("acm").import_certificate(Certificate=cert, PrivateKey=key)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    rt = Runtime(config=load_config(aws_cli.home, aws_cli.home / "certman.toml"))
    asked = tag_lookups(rt)
    report = sync_acm(rt)
    assert asked == [legacy["CertificateArn"]], "the managed ARN is known without its tags"
    assert report.updated == {"web"} and len(report.imported) == 1
    asked.clear()
    report = sync_acm(rt)
    assert asked == [], "both are rows now: no tags asked"
    assert len(report.updated) == 2 and report.imported == []
    rt.engine.dispose()


def test_a_copy_an_older_certman_mirrored_as_unmanaged_is_recognised_once(
    aws_cli: Cli, aws: Aws
) -> None:
    with_west_target(aws_cli)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "west")
    west = boto3.client("acm", region_name="us-west-2", endpoint_url=aws.endpoint_url)
    (copy,) = [c["CertificateArn"] for c in west.list_certificates()["CertificateSummaryList"]]
    rt = Runtime(config=load_config(aws_cli.home, aws_cli.home / "certman.toml"))
    with rt.session() as session:  # what a certman before copy recognition recorded
        now = rt.clock.now()
        session.add(
            ManagedCertificate(
                name="acm-old", source="acm", acm_arn=copy, created_at=now, updated_at=now
            )
        )
        session.commit()
    asked = tag_lookups(rt, "us-west-2")
    report = sync_acm(rt, "us-west-2")
    assert asked == [copy]
    assert report.updated == {"web"} and report.drift == {} and report.imported == []
    assert list(listing(aws_cli)) == ["web"], "the mirrored row is gone"
    rt.engine.dispose()


def test_acm_sync_flags_a_certificate_changed_outside_certman(aws_cli: Cli, aws: Aws) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    arn = listing(aws_cli)["web"]["acm_arn"]
    cert, key = self_signed("www.example.com")
    aws.client("acm").import_certificate(CertificateArn=arn, Certificate=cert, PrivateKey=key)
    out = aws_cli.ok("acm", "sync").stdout
    assert "drift: web:" in out and "changed outside certman" in out
    assert "changed outside certman" in listing(aws_cli)["web"]["drift"]


def test_acm_sync_flags_a_certificate_deleted_outside_certman(aws_cli: Cli, aws: Aws) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    arn = listing(aws_cli)["web"]["acm_arn"]
    aws.client("acm").delete_certificate(CertificateArn=arn)
    assert "deleted outside certman" in aws_cli.ok("acm", "sync").stdout


def wrappers(rt: Runtime) -> set[str]:
    with rt.session() as session:
        sealed = [r.sealed_key for r in session.exec(select(Revision)).all() if r.sealed_key]
        for ca in session.exec(select(Authority)).all():
            sealed += [ca.root_sealed_key, ca.intermediate_sealed_key]
    return {WrappedKey.from_json(s).wrapper for s in sealed}


def test_keys_move_from_local_to_kms_and_back(home: Path, aws: Aws, tmp_path: Path) -> None:
    aws.kms_key()
    write_config(
        home,
        aws_config(aws, kms=False, sse=None, acm=False) + '\n[kms]\nkey_id = "alias/certman"\n',
    )
    init_home(load_config(home, home / "certman.toml"), ca_key_type=None)
    cli = Cli(home)
    cli.ok("issue", "web", "-d", "www.example.com")
    rt = Runtime(config=load_config(home, home / "certman.toml"))
    assert wrappers(rt) == {"local"}

    out = cli.ok("keys", "rotate", "--to", "aws-kms").stdout
    assert 'type = "aws-kms"' in out
    assert wrappers(rt) == {"aws-kms"}
    # certman works before the operator switches [kms] type: both kinds can be opened
    cli.ok("export", "web", "--out", str(tmp_path / "a"))
    config = home / "certman.toml"
    config.write_text(config.read_text().replace("[kms]\n", '[kms]\ntype = "aws-kms"\n'))
    cli.ok("renew", "web", "--force")
    assert "archive" in cli.ok("archive", "verify").stdout  # revision 1's bundle is local-sealed

    cli.ok("keys", "rotate", "--to", "local")
    assert wrappers(rt) == {"local"}
    config.write_text(config.read_text().replace('type = "aws-kms"\n', ""))
    cli.ok("export", "web", "--out", str(tmp_path / "b"), "--force")
    exported = serialization.load_pem_private_key(
        (tmp_path / "b" / "privkey.pem").read_bytes(), None
    )
    leaf = x509.load_pem_x509_certificate((tmp_path / "b" / "cert.pem").read_bytes())
    assert exported.public_key() == leaf.public_key()
    audit = json.loads(cli.ok("audit", "list", "--json").stdout)
    moves = [e for e in audit if e["action"] == "keys.rotate"]
    assert [m["details"]["to"] for m in moves] == ["aws-kms", "local"]


def test_list_shows_the_source_the_arn_and_the_drift(aws_cli: Cli, aws: Aws) -> None:
    cert, key = self_signed("legacy.example.com")
    arn = aws.client("acm").import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    managed_arn = listing(aws_cli)["web"]["acm_arn"]
    aws.client("acm").delete_certificate(CertificateArn=managed_arn)
    aws_cli.ok("acm", "sync")
    lines = aws_cli.ok("list").stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "STATUS", "ISSUER", "SOURCE"]
    assert lines[0].rstrip().endswith("ACM ARN")
    legacy = next(line for line in lines if arn in line)
    assert " acm " in legacy
    web = next(line for line in lines if line.startswith("web "))
    assert " managed " in web and managed_arn in web
    assert any(line.startswith("drift: web:") for line in lines)


def with_west_target(cli: Cli) -> None:
    config = cli.home / "certman.toml"
    config.write_text(config.read_text() + '\n[targets.west]\ntype = "acm"\nregion = "us-west-2"\n')


def test_a_certificate_in_two_regions_is_managed_in_both(aws_cli: Cli, aws: Aws) -> None:
    with_west_target(aws_cli)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "west")
    west = boto3.client("acm", region_name="us-west-2", endpoint_url=aws.endpoint_url)
    east = aws.client("acm")
    assert len(west.list_certificates()["CertificateSummaryList"]) == 1
    assert len(east.list_certificates()["CertificateSummaryList"]) == 1
    for region in ("us-east-1", "us-west-2"):
        out = aws_cli.ok("acm", "sync", "--region", region).stdout
        assert out.startswith("0 new, 1 updated."), (region, out)
        assert "drift" not in out
    rows = listing(aws_cli)
    assert list(rows) == ["web"] and rows["web"]["drift"] is None
    # neither target takes the other region's ARN for a deleted one
    arns = {
        c["CertificateArn"]
        for acm in (east, west)
        for c in acm.list_certificates()["CertificateSummaryList"]
    }
    for target in ("west", "acm", "west"):
        result = aws_cli.ok("acm", "import", "web", "--target", target)
        assert "no longer exists" not in result.stderr and "ARN changed" not in result.stderr
        assert listing(aws_cli)["web"]["acm_arn"] in arns
    assert {
        c["CertificateArn"]
        for acm in (east, west)
        for c in acm.list_certificates()["CertificateSummaryList"]
    } == arns


def test_a_second_region_copy_changed_outside_certman_is_drift(aws_cli: Cli, aws: Aws) -> None:
    with_west_target(aws_cli)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "west")
    west = boto3.client("acm", region_name="us-west-2", endpoint_url=aws.endpoint_url)
    east = aws.client("acm")
    # whichever region's ARN the row does not keep: change that copy outside certman
    kept = listing(aws_cli)["web"]["acm_arn"]
    acm, arn = next(
        (c, a)
        for c in (west, east)
        for a in [c.list_certificates()["CertificateSummaryList"][0]["CertificateArn"]]
        if a != kept
    )
    cert, key = self_signed("www.example.com")
    acm.import_certificate(CertificateArn=arn, Certificate=cert, PrivateKey=key)
    acm.add_tags_to_certificate(CertificateArn=arn, Tags=[{"Key": "certman:name", "Value": "web"}])
    region = arn.split(":")[3]
    out = aws_cli.ok("acm", "sync", "--region", region).stdout
    assert "0 new, 1 updated." in out and f"drift: web: {arn} holds serial" in out


def load_balancer_using(aws: Aws, certificate_arn: str) -> str:
    """An ALB with an HTTPS listener on ``certificate_arn`` (moto sets ACM InUseBy so)."""
    ec2, elb = aws.client("ec2"), aws.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, Type="application")
    lb_arn = str(lb["LoadBalancers"][0]["LoadBalancerArn"])
    elb.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": certificate_arn}],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}],
    )
    return lb_arn


def test_acm_sync_records_the_type_and_who_uses_each_certificate(aws_cli: Cli, aws: Aws) -> None:
    cert, key = self_signed("legacy.example.com")
    legacy_arn = aws.client("acm").import_certificate(Certificate=cert, PrivateKey=key)[
        "CertificateArn"
    ]
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    lb_arn = load_balancer_using(aws, listing(aws_cli)["web"]["acm_arn"])
    aws_cli.ok("acm", "sync")
    rows = listing(aws_cli)
    legacy = next(r for r in rows.values() if r["acm_arn"] == legacy_arn)
    web = rows["web"]
    reported = aws.client("acm").describe_certificate(CertificateArn=web["acm_arn"])
    assert web["in_use_by"] == reported["Certificate"]["InUseBy"]
    # AWS names the load balancer, moto its listener: either way this one
    (user,) = web["in_use_by"]
    assert lb_arn.split(":loadbalancer/")[1] in user
    assert (web["acm_type"], web["acm_status"]) == ("IMPORTED", "ISSUED")
    assert (legacy["acm_type"], legacy["in_use_by"]) == ("IMPORTED", [])
    shown = json.loads(aws_cli.ok("show", "web", "--json").stdout)
    assert (shown["acm_type"], shown["in_use_by"]) == ("IMPORTED", [user])
