"""The `elbv2` target against moto: SNI add, default swap, verify failure + rollback, quota."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from certman.aws.clients import region_of
from tests.aws.conftest import REGION, Aws
from tests.components.nginx import Nginx, free_port, start_nginx
from tests.conftest import Cli
from tests.selfsigned import self_signed_pem as self_signed


@dataclass
class Alb:
    arn: str
    listeners: list[str]
    placeholder_arn: str


def regional(aws: Aws, service: str, region: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=aws.endpoint_url)


def make_alb(aws: Aws, region: str = REGION, ports: tuple[int, ...] = (443, 8443)) -> Alb:
    """A VPC with two subnets, an ALB, a target group and HTTPS listeners on ``ports``
    whose default certificate is a placeholder imported into ACM."""
    ec2, elb = regional(aws, "ec2", region), regional(aws, "elbv2", region)
    acm = regional(aws, "acm", region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{z}")[
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
        for port in ports
    ]
    return Alb(arn=lb_arn, listeners=listeners, placeholder_arn=placeholder)


@pytest.fixture
def alb(aws: Aws) -> Alb:
    return make_alb(aws)


@pytest.fixture
def wrong_server(tmp_path: Path) -> Iterator[Nginx]:
    """A TLS server that answers, with a placeholder: a probe there never sees the new serial."""
    server = start_nginx(tmp_path / "nginx")
    yield server
    server.stop()


def add_lb_target(
    home: Path, alb: Alb, role: str = "sni", extra: str = "", name: str = "lb"
) -> None:
    config = home / "certman.toml"
    arns = ", ".join(f'"{a}"' for a in alb.listeners)
    config.write_text(
        config.read_text()
        + f'\n[targets.{name}]\ntype = "elbv2"\n'
        + f'listener_arns = [{arns}]\nrole = "{role}"\n{extra}'
    )


def sni(aws: Aws, listener: str, region: str = REGION) -> list[str]:
    elb = regional(aws, "elbv2", region)
    certs = elb.describe_listener_certificates(ListenerArn=listener)["Certificates"]
    return [c["CertificateArn"] for c in certs if not c.get("IsDefault")]


def acm_arns(aws: Aws, region: str = REGION) -> list[str]:
    summaries = regional(aws, "acm", region).list_certificates(
        Includes={"keyTypes": ["EC_prime256v1", "RSA_2048"]}
    )["CertificateSummaryList"]
    return sorted(c["CertificateArn"] for c in summaries)


def acm_serial(aws: Aws, arn: str) -> str:
    serial = aws.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]["Serial"]
    return format(int(serial), "x") if serial.isdigit() else serial.replace(":", "").lower()


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
        extra=f'probe = "127.0.0.1:{free_port()}"\nprobe_timeout = "2s"\n',
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


def test_the_quota_counts_every_listener_still_missing_the_arn(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    """2 of 3 used and 2 listeners to add to: one would fit, the second would fail half-way."""
    add_lb_target(aws_home, alb, extra="certificate_quota = 3\n")
    acm, elb = aws.client("acm"), aws.client("elbv2")
    for i in range(2):
        cert, key = self_signed(f"filler{i}.example.com")
        filler = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
        elb.add_listener_certificates(
            ListenerArn=alb.listeners[0], Certificates=[{"CertificateArn": filler}]
        )
    sni_before = [sni(aws, listener) for listener in alb.listeners]
    arns_before = acm_arns(aws)

    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")

    assert result.exit_code == 2
    assert "holds 2 SNI certificates and this rollout would add 2, over its quota of 3" in (
        result.stderr
    )
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert [sni(aws, listener) for listener in alb.listeners] == sni_before
    assert acm_arns(aws) == arns_before


def test_a_listener_that_does_not_exist_is_refused(aws_home: Path, aws_cli: Cli, alb: Alb) -> None:
    alb.listeners = [alb.listeners[0] + "x"]
    add_lb_target(aws_home, alb)
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 2
    assert "listener_arns" in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []


def test_a_failed_sni_rollout_removes_the_added_arn_from_every_listener(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    add_lb_target(aws_home, alb, extra=f'probe = "127.0.0.1:{free_port()}"\nprobe_timeout = "2s"\n')
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 1 and "went back" in result.stderr
    assert all(sni(aws, listener) == [] for listener in alb.listeners)
    assert acm_arns(aws) == [alb.placeholder_arn]


def test_a_failed_deploy_leaves_acm_on_the_active_revision(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb, wrong_server: Nginx
) -> None:
    """ACM already held the active revision, so the rollback has nothing to undo there: it
    must not re-import the revision before (the inventory would say one thing, ACM another)."""
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    aws_cli.ok("renew", "web", "--force")
    active = show(aws_cli, "web")
    assert acm_serial(aws, active["acm_arn"]) == active["serial"]
    add_lb_target(aws_home, alb, extra=f'probe = "{wrong_server.endpoint}"\nprobe_timeout = "2s"\n')

    result = aws_cli("deploy", "web", "--target", "acm", "--target", "lb")

    assert result.exit_code == 1 and "did not verify" in result.stderr
    assert acm_serial(aws, active["acm_arn"]) == active["serial"]
    assert all(sni(aws, listener) == [] for listener in alb.listeners)
    assert show(aws_cli, "web")["acm_arn"] == active["acm_arn"]
    audit = json.loads(aws_cli.ok("audit", "list", "--json").stdout)
    assert audit[-1]["action"] == "deploy.failed"


def test_the_named_canary_listener_is_switched_and_verified_first(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb, wrong_server: Nginx
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    add_lb_target(aws_home, alb, extra=f'probe = "{wrong_server.endpoint}"\nprobe_timeout = "2s"\n')
    first, second = alb.listeners
    result = aws_cli("deploy", "web", "--target", "lb", "--canary", second)
    assert result.exit_code == 1
    assert f"Target lb ({second}) did not verify" in result.stderr
    assert f"({first})" not in result.stderr, "the first listener was never switched"
    assert sni(aws, first) == sni(aws, second) == []


@pytest.mark.parametrize("remove_old", [True, False])
def test_remove_old_drops_a_replaced_arn_once_the_rollout_verified(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb, remove_old: bool
) -> None:
    add_lb_target(aws_home, alb, extra=f"remove_old = {str(remove_old).lower()}\n")
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    old = show(aws_cli, "web")["acm_arn"]
    aws.client("acm").delete_certificate(CertificateArn=old)  # moto allows it while in use
    aws_cli.ok("acm", "import", "web")  # a new ARN: listeners still name the old one
    new = show(aws_cli, "web")["acm_arn"]
    assert new != old

    result = aws_cli.ok("deploy", "web")

    for listener in alb.listeners:
        assert sni(aws, listener) == ([new] if remove_old else [old, new])
    assert ("removed the replaced" in result.stdout) is remove_old


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('wave_size = "two"', "wave_size = 'two' in [targets.lb] of {config} must be a whole"),
        ("wave_size = 0", "wave_size = 0 in [targets.lb] of {config} must be at least 1"),
        (
            'certificate_quota = "lots"',
            "certificate_quota = 'lots' in [targets.lb] of {config} must be a whole number",
        ),
        (
            'remove_old = "false"',
            "remove_old = 'false' in [targets.lb] of {config} must be true or false",
        ),
    ],
)
def test_bad_numbers_and_booleans_are_refused_before_anything_is_issued(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb, setting: str, message: str
) -> None:
    add_lb_target(aws_home, alb, extra=setting + "\n")
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm", "--target", "lb")
    assert result.exit_code == 2
    assert message.format(config=aws_home / "certman.toml") in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert acm_arns(aws) == [alb.placeholder_arn]


def test_an_elbv2_target_without_an_acm_target_is_refused_before_issuance(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    add_lb_target(aws_home, alb)
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "lb")
    assert result.exit_code == 2
    assert "no acm target in us-east-1 deploys it" in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert all(sni(aws, listener) == [] for listener in alb.listeners)


def test_the_plan_shows_what_each_listener_serves_now(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    add_lb_target(aws_home, alb, role="default")
    placeholder = aws.client("acm").describe_certificate(CertificateArn=alb.placeholder_arn)
    placeholder_serial = acm_serial(aws, alb.placeholder_arn)
    not_after = placeholder["Certificate"]["NotAfter"].strftime("%Y-%m-%dT%H:%M:%SZ")
    plan = json.loads(aws_cli.ok("deploy", "plan", "web", "--target", "lb", "--json").stdout)
    for step in plan["steps"]:
        assert (step["current_serial"], step["current_not_after"]) == (
            placeholder_serial,
            not_after,
        )
    human = aws_cli.ok("deploy", "plan", "web", "--target", "lb").stdout
    assert f"{placeholder_serial} (until {not_after}) -> " in human

    aws_cli.ok("deploy", "web", "--target", "lb")
    view = show(aws_cli, "web")
    plan = json.loads(aws_cli.ok("deploy", "plan", "web", "--target", "lb", "--json").stdout)
    for step in plan["steps"]:
        assert (step["current_serial"], step["current_not_after"]) == (
            view["serial"],
            view["not_after"],
        )
        assert step["change"] == "none"


def test_each_region_keeps_its_own_arn_and_only_the_primary_one_is_recorded(
    aws_home: Path, aws_cli: Cli, aws: Aws, alb: Alb
) -> None:
    west = make_alb(aws, "us-west-2")
    config = aws_home / "certman.toml"
    config.write_text(
        config.read_text() + '\n[targets.acm-west]\ntype = "acm"\nregion = "us-west-2"\n'
    )
    add_lb_target(aws_home, alb)
    add_lb_target(aws_home, west, name="lb-west", extra='region = "us-west-2"\n')
    targets = ["--target", "acm", "--target", "acm-west", "--target", "lb", "--target", "lb-west"]

    aws_cli.ok("issue", "web", "-d", "www.example.com", *targets)

    (east_arn,) = [a for a in acm_arns(aws) if a != alb.placeholder_arn]
    (west_arn,) = [a for a in acm_arns(aws, "us-west-2") if a != west.placeholder_arn]
    assert region_of(west_arn) == "us-west-2"
    assert show(aws_cli, "web")["acm_arn"] == east_arn
    assert all(sni(aws, listener) == [east_arn] for listener in alb.listeners)
    assert all(sni(aws, listener, "us-west-2") == [west_arn] for listener in west.listeners)

    aws_cli.ok("renew", "web", "--force")
    assert show(aws_cli, "web")["acm_arn"] == east_arn
    assert [a for a in acm_arns(aws, "us-west-2") if a != west.placeholder_arn] == [west_arn]
    assert all(sni(aws, listener, "us-west-2") == [west_arn] for listener in west.listeners)
    plan = json.loads(aws_cli.ok("deploy", "plan", "web", "--json").stdout)
    serial = show(aws_cli, "web")["serial"]
    assert {s["target"]: s["change"] for s in plan["steps"]} == {
        "acm": "none",
        "acm-west": "none",
        "lb": "none",
        "lb-west": "none",
    }
    assert all(s["current_serial"] == serial for s in plan["steps"])
