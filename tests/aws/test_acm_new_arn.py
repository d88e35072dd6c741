"""acm_strategy = "new-arn" on a moto ALB with four listeners: each wave moves on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from certman.contracts.deployer import VerifyRequest, VerifyResponse
from certman.deploy.elbv2 import Elbv2Deployer
from tests.aws.conftest import REGION, Aws
from tests.aws.pki import TestCA
from tests.aws.test_acm import deployer
from tests.aws.test_elbv2 import acm_arns, acm_serial, default, make_alb, regional, show, sni
from tests.conftest import Cli
from tests.selfsigned import self_signed_pem as self_signed


@dataclass
class Balancer:
    placeholder_arn: str
    other_arn: str  # another site's SNI certificate on every listener: never touched
    default_listeners: list[str]  # target "lb", role "default"
    sni_listener: str  # target "lb-sni", role "sni"

    @property
    def listeners(self) -> list[str]:
        return [*self.default_listeners, self.sni_listener]


def make_balancer(aws: Aws) -> Balancer:
    """Four HTTPS listeners on one ALB (three to switch the default certificate of, one the
    SNI list of), each also serving another site's certificate that must stay."""
    alb = make_alb(aws, ports=(443, 8443, 9443, 10443))
    elb, acm = regional(aws, "elbv2", REGION), regional(aws, "acm", REGION)
    cert, key = self_signed("other.example.com")
    other = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    for listener in alb.listeners:
        elb.add_listener_certificates(
            ListenerArn=listener, Certificates=[{"CertificateArn": other}]
        )
    return Balancer(
        placeholder_arn=alb.placeholder_arn,
        other_arn=other,
        default_listeners=alb.listeners[:3],
        sni_listener=alb.listeners[3],
    )


def configure(home: Path, balancer: Balancer, strategy: str | None = "new-arn") -> None:
    config = home / "certman.toml"
    text = config.read_text()
    if strategy is not None:
        text = text.replace(
            '[targets.acm]\ntype = "acm"\n',
            f'[targets.acm]\ntype = "acm"\nacm_strategy = "{strategy}"\n',
        )
    arns = ", ".join(f'"{a}"' for a in balancer.default_listeners)
    text += f'\n[targets.lb]\ntype = "elbv2"\nlistener_arns = [{arns}]\nrole = "default"\n'
    text += (
        f'\n[targets.lb-sni]\ntype = "elbv2"\nlistener_arns = ["{balancer.sni_listener}"]\n'
        'role = "sni"\n'
    )
    config.write_text(text)


TARGETS = ("--target", "acm", "--target", "lb", "--target", "lb-sni")


@pytest.fixture
def balancer(aws: Aws) -> Balancer:
    return make_balancer(aws)


@pytest.fixture
def issued(aws_home: Path, aws_cli: Cli, balancer: Balancer) -> str:
    """web issued (revision 1) and on every listener under the ARN it returns."""
    configure(aws_home, balancer)
    aws_cli.ok("issue", "web", "-d", "www.example.com", *TARGETS)
    return str(show(aws_cli, "web")["acm_arn"])


def holds(aws: Aws, balancer: Balancer) -> dict[str, str]:
    """Per listener, which ARN serves web: the default of the first three, and the SNI
    entry of the fourth (other than the other site's); other sites' entries must stay."""
    held = {}
    for listener in balancer.default_listeners:
        assert sni(aws, listener) == [balancer.other_arn], "the SNI list is kept"
        held[listener] = default(aws, listener)
    (web,) = [a for a in sni(aws, balancer.sni_listener) if a != balancer.other_arn]
    assert balancer.other_arn in sni(aws, balancer.sni_listener)
    held[balancer.sni_listener] = web
    return held


def web_arns(aws: Aws, balancer: Balancer) -> list[str]:
    return [a for a in acm_arns(aws) if a not in (balancer.placeholder_arn, balancer.other_arn)]


def watch_verifies(
    monkeypatch: pytest.MonkeyPatch, aws: Aws, balancer: Balancer, fail_at: str | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Record, at every listener verify, what each listener serves; fail ``fail_at``'s."""
    seen: list[tuple[str, dict[str, str]]] = []
    verify = Elbv2Deployer.verify

    def watched(self: Elbv2Deployer, request: VerifyRequest) -> VerifyResponse:
        seen.append((request.unit, holds(aws, balancer)))
        if request.unit == fail_at:
            return VerifyResponse(ok=False, message="injected failure.")
        return verify(self, request)

    monkeypatch.setattr(Elbv2Deployer, "verify", watched)
    return seen


def test_new_arn_moves_the_canary_first_then_each_wave_and_deletes_the_old_arn(
    aws_cli: Cli, aws: Aws, balancer: Balancer, issued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = issued
    assert set(holds(aws, balancer).values()) == {old}
    seen = watch_verifies(monkeypatch, aws, balancer)

    result = aws_cli.ok("renew", "web", "--force")

    view = show(aws_cli, "web")
    new = view["acm_arn"]
    assert new != old and acm_serial(aws, new) == view["serial"]
    canary, *rest = balancer.listeners
    assert [unit for unit, _ in seen] == balancer.listeners, "one listener per wave"
    # after the canary's switch, only the canary serves the new ARN
    assert seen[0][1] == {canary: new, **{other: old for other in rest}}
    # each later wave: the listeners before it have moved, those after it not yet
    for index, (_, held) in enumerate(seen):
        assert held == {
            listener: new if position <= index else old
            for position, listener in enumerate(balancer.listeners)
        }
    assert set(holds(aws, balancer).values()) == {new}
    assert web_arns(aws, balancer) == [new], "the replaced ARN is deleted"
    assert f"web: deleted the replaced {old} (no listener uses it)" in result.stderr
    # deploying the active revision again: ACM's new ARN holds it already, nothing moves
    aws_cli.ok("deploy", "web")
    assert web_arns(aws, balancer) == [new] and set(holds(aws, balancer).values()) == {new}


def test_a_failed_verify_moves_the_switched_listeners_back_and_keeps_the_old_arn(
    aws_cli: Cli, aws: Aws, balancer: Balancer, issued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = issued
    before = show(aws_cli, "web")
    watch_verifies(monkeypatch, aws, balancer, fail_at=balancer.sni_listener)  # the last wave

    result = aws_cli("renew", "web", "--force")

    assert result.exit_code == 1
    assert "injected failure" in result.stderr and "went back to revision 1" in result.stderr
    assert set(holds(aws, balancer).values()) == {old}
    assert web_arns(aws, balancer) == [old], "the ARN imported for revision 2 is deleted"
    assert acm_serial(aws, old) == before["serial"], "the old ARN was never re-imported"
    view = show(aws_cli, "web")
    assert (view["acm_arn"], view["revision"]) == (old, 1)
    assert view["revisions"][-1]["state"] == "failed"


class Killed(BaseException):
    """Stands for a SIGKILL: nothing in certman catches it."""


def test_a_killed_rollout_resumes_on_the_recorded_arn_without_importing_again(
    aws_cli: Cli, aws: Aws, balancer: Balancer, issued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = issued
    canary, second, *_ = balancer.listeners
    deploy = Elbv2Deployer.deploy

    def dies_at_the_second_wave(self: Elbv2Deployer, request: Any) -> Any:
        if request.unit == second:
            raise Killed
        return deploy(self, request)

    monkeypatch.setattr(Elbv2Deployer, "deploy", dies_at_the_second_wave)
    with pytest.raises(Killed):
        aws_cli("renew", "web", "--force")
    (new,) = [a for a in web_arns(aws, balancer) if a != old]
    assert holds(aws, balancer)[canary] == new
    assert show(aws_cli, "web")["acm_arn"] == old, "recorded only once the rollout succeeded"
    monkeypatch.setattr(Elbv2Deployer, "deploy", deploy)

    aws_cli.ok("renew", "web")

    assert show(aws_cli, "web")["acm_arn"] == new, "the resume used the recorded ARN"
    assert web_arns(aws, balancer) == [new], "imported once; the old ARN deleted"
    assert set(holds(aws, balancer).values()) == {new}


def test_reimport_stays_the_default_and_switches_every_listener_with_acm(
    aws_home: Path, aws_cli: Cli, aws: Aws, balancer: Balancer
) -> None:
    configure(aws_home, balancer, strategy=None)
    aws_cli.ok("issue", "web", "-d", "www.example.com", *TARGETS)
    arn = show(aws_cli, "web")["acm_arn"]

    aws_cli.ok("renew", "web", "--force")

    view = show(aws_cli, "web")
    assert view["acm_arn"] == arn and acm_serial(aws, arn) == view["serial"]
    assert set(holds(aws, balancer).values()) == {arn}
    assert web_arns(aws, balancer) == [arn]
    plan = json.loads(aws_cli.ok("deploy", "plan", "web", "--json").stdout)
    assert {s["acm_strategy"] for s in plan["steps"]} == {"reimport"}


def test_the_plan_says_which_strategy_applies_and_what_moves_when(
    aws_home: Path, aws_cli: Cli, balancer: Balancer
) -> None:
    configure(aws_home, balancer)
    aws_cli.ok("issue", "web", "-d", "www.example.com", "--target", "acm")
    plan = json.loads(aws_cli.ok("deploy", "plan", "web", *TARGETS, "--json").stdout)
    steps = [(s["wave"], s["target"], s["acm_strategy"]) for s in plan["steps"]]
    assert steps == [
        (1, "acm", "new-arn"),
        (2, "lb", "new-arn"),
        (3, "lb", "new-arn"),
        (4, "lb", "new-arn"),
        (5, "lb-sni", "new-arn"),
    ]
    assert plan["steps"][1]["change"].startswith("make the new ARN the default certificate of")
    assert plan["steps"][4]["change"].startswith("add the new ARN to the SNI list of")
    human = aws_cli.ok("deploy", "plan", "web", *TARGETS).stdout
    assert 'acm: acm_strategy "new-arn": imported under a new ARN' in human
    assert "the old ARN is deleted once no listener uses it" in human


@pytest.mark.parametrize("value", ['"fresh"', "true"])
def test_an_unknown_acm_strategy_is_refused_before_anything_is_issued(
    aws_home: Path, aws_cli: Cli, aws: Aws, balancer: Balancer, value: str
) -> None:
    config = aws_home / "certman.toml"
    acm = '[targets.acm]\ntype = "acm"\n'
    config.write_text(config.read_text().replace(acm, f"{acm}acm_strategy = {value}\n"))
    result = aws_cli("issue", "web", "-d", "www.example.com", "--target", "acm")
    assert result.exit_code == 2
    assert f"acm_strategy = {value.replace(chr(34), chr(39)).replace('true', 'True')}" in (
        result.stderr
    )
    assert 'use "reimport"' in result.stderr and '"new-arn"' in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(aws_cli.ok("list", "--json").stdout) == []
    assert web_arns(aws, balancer) == []


def test_an_import_whose_record_was_lost_is_adopted_not_imported_twice(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the import and the checkpoint: the new ARN is found by tag and serial."""
    ca = TestCA()
    target = deployer(aws)
    target.strategy = "new-arn"
    old = target.deploy(ca.leaf().request(revision=1)).state["acm_arn"]
    renewed = ca.leaf()
    first = target.deploy(renewed.request(revision=2, acm_arn=old))
    assert first.changed and first.state["replaces"] == old and first.state["acm_arn"] != old
    again = target.deploy(renewed.request(revision=2, acm_arn=old))  # nothing recorded
    assert not again.changed
    assert dict(again.state) == {**first.state, "created": "yes"}
    assert len(target.acm.list_certificates()["CertificateSummaryList"]) == 2


def test_the_replaced_arn_is_kept_while_a_listener_outside_the_rollout_names_it(
    aws_cli: Cli, aws: Aws, balancer: Balancer, issued: str
) -> None:
    old = issued
    elb = aws.client("elbv2")
    (listener,) = elb.describe_listeners(ListenerArns=[balancer.sni_listener])["Listeners"]
    stranger = elb.create_listener(
        LoadBalancerArn=listener["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=11443,
        Certificates=[{"CertificateArn": old}],
        DefaultActions=listener["DefaultActions"],
    )["Listeners"][0]["ListenerArn"]

    result = aws_cli.ok("renew", "web", "--force")

    new = show(aws_cli, "web")["acm_arn"]
    assert set(holds(aws, balancer).values()) == {new}
    assert default(aws, stranger) == old
    assert sorted(web_arns(aws, balancer)) == sorted([old, new]), "kept: still in use"
    assert f"kept the replaced {old}: still used by {stranger}" in result.stderr
