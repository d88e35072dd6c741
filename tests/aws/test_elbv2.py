"""The `elbv2` target against moto: SNI add, default swap, verify failure + rollback, quota."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.aws.conftest import Aws
from tests.aws.test_sync_rotate import self_signed
from tests.components.nginx import free_port
from tests.conftest import Cli


@dataclass
class Alb:
    arn: str
    listeners: list[str]
    placeholder_arn: str


@pytest.fixture
def alb(aws: Aws) -> Alb:
    ec2, elb, acm = aws.client("ec2"), aws.client("elbv2"), aws.client("acm")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="web", Subnets=subnets, Type="application")
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)
    tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
    cert, key = self_signed("placeholder.example.com")
    placeholder = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    listeners = [
        elb.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTPS",
            Port=port,
            Certificates=[{"CertificateArn": placeholder}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )["Listeners"][0]["ListenerArn"]
        for port in (443, 8443)
    ]
    return Alb(arn=lb_arn, listeners=listeners, placeholder_arn=placeholder)


def add_lb_target(home: Path, alb: Alb, role: str = "sni", extra: str = "") -> None:
    config = home / "certman.toml"
    arns = ", ".join(f'"{a}"' for a in alb.listeners)
    config.write_text(
        config.read_text()
        + '\n[targets.lb]\ntype = "elbv2"\n'
        + f'listener_arns = [{arns}]\nrole = "{role}"\n{extra}'
    )


def sni(aws: Aws, listener: str) -> list[str]:
    certs = aws.client("elbv2").describe_listener_certificates(ListenerArn=listener)["Certificates"]
    return [c["CertificateArn"] for c in certs if not c.get("IsDefault")]


def default(aws: Aws, listener: str) -> str:
    listeners = aws.client("elbv2").describe_listeners(ListenerArns=[listener])["Listeners"]
    return listeners[0]["Certificates"][0]["CertificateArn"]


def show(cli: Cli, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cli.ok("show", name, "--json").stdout)


def test_sni_role_adds_the_arn_to_every_listener(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    add_lb_target(aws_home, alb)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    arn = show(aws_cli, "web")["acm_arn"]
    for listener in alb.listeners:
        assert arn in sni(aws, listener)
        assert default(aws, listener) == alb.placeholder_arn
    aws_cli.ok("renew", "web", "--force")
    assert show(aws_cli, "web")["acm_arn"] == arn
    assert all(sni(aws, listener).count(arn) == 1 for listener in alb.listeners)


def test_deploy_plan_lists_waves_and_changes_nothing(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    add_lb_target(aws_home, alb)
    plan = json.loads(
        aws_cli.ok("deploy", "plan", "web", "--target", "acm", "--target", "lb", "--json").stdout
    )
    steps = [(s["wave"], s["target"], s["unit"]) for s in plan["steps"]]
    assert steps == [(1, "acm", ""), (2, "lb", alb.listeners[0]), (3, "lb", alb.listeners[1])]
    assert plan["steps"][0]["change"] == "none"  # ACM holds this revision already
    assert all(sni(aws, listener) == [] for listener in alb.listeners)
    canary = json.loads(
        aws_cli.ok(
            "deploy", "plan", "web", "--target", "lb", "--canary", alb.listeners[1], "--json"
        ).stdout
    )
    assert [s["unit"] for s in canary["steps"]] == [alb.listeners[1], alb.listeners[0]]


def test_default_role_swaps_the_default_and_keeps_the_sni_list(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    other, key = self_signed("other.example.com")
    other_arn = aws.client("acm").import_certificate(Certificate=other, PrivateKey=key)[
        "CertificateArn"
    ]
    for listener in alb.listeners:
        aws.client("elbv2").add_listener_certificates(
            ListenerArn=listener, Certificates=[{"CertificateArn": other_arn}]
        )
    add_lb_target(aws_home, alb, role="default")
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    arn = show(aws_cli, "web")["acm_arn"]
    for listener in alb.listeners:
        assert default(aws, listener) == arn
        assert other_arn in sni(aws, listener)


def test_a_failed_verify_rolls_every_switched_listener_back(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    add_lb_target(
        aws_home,
        alb,
        role="default",
        extra=f'probe = "127.0.0.1:{free_port()}"\nprobe_timeout = "1s"\n',
    )
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 1
    assert "did not verify" in result.stderr and "went back" in result.stderr
    for listener in alb.listeners:
        assert default(aws, listener) == alb.placeholder_arn
    # the ACM certificate created for this first issuance is gone again
    arns = [
        c["CertificateArn"] for c in aws.client("acm").list_certificates()["CertificateSummaryList"]
    ]
    assert arns == [alb.placeholder_arn]
    view = show(aws_cli, "web")
    assert view["status"] == "failed" and view["revisions"][0]["state"] == "failed"
    assert view["acm_arn"] is None
    audit = json.loads(aws_cli.ok("audit", "list", "--json").stdout)
    assert audit[-1]["action"] == "certificate.failed"


def test_the_certificate_quota_is_refused_before_anything_changes(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    add_lb_target(aws_home, alb, extra="certificate_quota = 3\n")
    acm, elb = aws.client("acm"), aws.client("elbv2")
    for i in range(3):
        cert, key = self_signed(f"filler{i}.example.com")
        filler = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
        elb.add_listener_certificates(
            ListenerArn=alb.listeners[0], Certificates=[{"CertificateArn": filler}]
        )
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 2
    assert "quota of 3" in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert len(acm.list_certificates()["CertificateSummaryList"]) == 4


def test_a_listener_that_does_not_exist_is_refused(aws_home: Path, aws_cli: Cli, alb: Alb) -> None:
    alb.listeners = [alb.listeners[0] + "x"]
    add_lb_target(aws_home, alb)
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 2
    assert "listener_arns" in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
