"""DNS-01 against Pebble: an exec hook publishing to challtestsrv, and Route53 on a moto server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certman.acme_client.solvers.contract import ChallengeRequest
from certman.acme_client.solvers.dns01 import DnsZoneSolver

from certman.aws.route53 import Route53Zone
from tests.acme.conftest import AcmeHome, verify_chain
from tests.components.moto_server import MotoServer
from tests.components.pebble import Pebble, PebbleOptions

HOOK = """#!{python}
import json, os, urllib.request
env = {{k: v for k, v in os.environ.items() if k.startswith("CERTMAN_ACME_")}}
with open({log!r}, "a") as f:
    f.write(json.dumps(env) + "\\n")
action = env["CERTMAN_ACME_ACTION"]
body = {{"host": env["CERTMAN_ACME_TXT_NAME"] + "."}}
if action == "set":
    body["value"] = {value}
path = "/set-txt" if action == "set" else "/clear-txt"
request = urllib.request.Request({url!r} + path, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(request, timeout=5).read()
"""


def write_hook(directory: Path, pebble: Pebble, *, wrong_value: bool = False) -> tuple[Path, Path]:
    hook, log = directory / "dns-hook", directory / "dns-hook.log"
    value = '"not-the-right-value"' if wrong_value else 'env["CERTMAN_ACME_TXT_VALUE"]'
    url = f"http://127.0.0.1:{pebble.challtestsrv_port}"
    hook.write_text(HOOK.format(python=sys.executable, log=str(log), value=value, url=url))
    hook.chmod(0o755)
    return hook, log


def hook_calls(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_exec_hook_proves_a_wildcard_and_its_apex(acme_home: AcmeHome, tmp_path: Path) -> None:
    hook, log = write_hook(tmp_path, acme_home.pebble)
    acme_home.configure("dns", challenge="dns-01", dns_provider="exec", dns_hook=str(hook))
    result = acme_home.issue("wild", "*.example.org", "example.org", issuer="dns")
    assert result.exit_code == 0, result.stderr
    (rev,) = acme_home.revisions("wild")
    assert rev.certificate_pem and rev.chain_pem
    verify_chain(
        rev.certificate_pem,
        rev.chain_pem,
        acme_home.pebble.root_pem,
        ["*.example.org", "example.org"],
    )
    calls = hook_calls(log)
    sets = [c for c in calls if c["CERTMAN_ACME_ACTION"] == "set"]
    clears = [c for c in calls if c["CERTMAN_ACME_ACTION"] == "clear"]
    # Pebble may reuse a valid authorization (PEBBLE_AUTHZREUSE); whatever was set is cleared.
    assert 1 <= len(sets) == len(clears) <= 2
    assert {c["CERTMAN_ACME_TXT_NAME"] for c in sets} == {"_acme-challenge.example.org"}
    assert {c["CERTMAN_ACME_DOMAIN"] for c in sets} == {"example.org"}
    assert all(c["CERTMAN_ACME_TXT_VALUE"] for c in sets)
    assert acme_home.pebble.txt_records("_acme-challenge.example.org") == []


def test_a_failing_dns_challenge_leaves_no_txt_record(acme_home: AcmeHome, tmp_path: Path) -> None:
    hook, log = write_hook(tmp_path, acme_home.pebble, wrong_value=True)
    acme_home.configure("dns", challenge="dns-01", dns_provider="exec", dns_hook=str(hook))
    result = acme_home.issue("bad", "wrong.example.org", issuer="dns")
    assert result.exit_code == 1
    assert "Validation failed: wrong.example.org (dns-01)" in result.stderr
    assert "urn:ietf:params:acme:error:unauthorized" in result.stderr
    assert [c["CERTMAN_ACME_ACTION"] for c in hook_calls(log)] == ["set", "clear"]
    assert acme_home.pebble.txt_records("_acme-challenge.wrong.example.org") == []
    (rev,) = acme_home.revisions("bad")
    assert rev.state == "failed"


def test_a_failing_hook_is_reported_and_cleanup_still_runs(
    acme_home: AcmeHome, tmp_path: Path
) -> None:
    hook = tmp_path / "broken-hook"
    log = tmp_path / "broken.log"
    hook.write_text(
        f'#!/bin/sh\necho "$CERTMAN_ACME_ACTION" >> {log}\necho "no API token" >&2\nexit 3\n'
    )
    hook.chmod(0o755)
    acme_home.configure("dns", challenge="dns-01", dns_provider="exec", dns_hook=str(hook))
    result = acme_home.issue("bad", "hook.example.org", issuer="dns")
    assert result.exit_code == 1
    assert "failed to set the TXT record _acme-challenge.hook.example.org" in result.stderr
    assert "exit 3: no API token" in result.stderr
    assert log.read_text().split() == ["set", "clear"]


# --- Route53 on a moto server ------------------------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lenient_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """moto serves no DNS, so this Pebble skips validation (PEBBLE_VA_ALWAYS_VALID=1)."""
    with Pebble(tmp_path_factory.mktemp("pebble-valid"), PebbleOptions(always_valid=True)) as p:
        yield p


@pytest.fixture
def route53(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("route53", region_name="us-east-1", endpoint_url=moto.endpoint_url)
    for zone in client.list_hosted_zones()["HostedZones"]:
        records = client.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
        changes = [
            {"Action": "DELETE", "ResourceRecordSet": r}
            for r in records
            if r["Type"] not in ("SOA", "NS")
        ]
        if changes:
            client.change_resource_record_sets(
                HostedZoneId=zone["Id"], ChangeBatch={"Changes": changes}
            )
        client.delete_hosted_zone(Id=zone["Id"])
    return client


def route53_solver(client: Any, *, setting: str) -> DnsZoneSolver:
    zone = Route53Zone(client=client, hosted_zone_id=None, setting=setting)
    return DnsZoneSolver(zone=zone, timeout=10)


def txt_records(client: Any, zone_id: str) -> dict[str, list[str]]:
    records = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {
        r["Name"]: [v["Value"] for v in r["ResourceRecords"]] for r in records if r["Type"] == "TXT"
    }


def test_route53_issues_a_wildcard_and_removes_its_records(
    acme_home: AcmeHome, lenient_pebble: Pebble, moto: MotoServer, route53: Any
) -> None:
    zone = route53.create_hosted_zone(Name="example.net.", CallerReference="certman-test")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    acme_home.configure(section="aws", region="us-east-1", endpoint_url=moto.endpoint_url)
    acme_home.configure(
        "r53",
        directory=lenient_pebble.directory_url,
        ca_bundle=str(lenient_pebble.ca_bundle),
        challenge="dns-01",
        dns_provider="route53",
        propagation_timeout="30s",
    )
    result = acme_home.issue("net", "*.example.net", "example.net", issuer="r53")
    assert result.exit_code == 0, result.stderr
    (rev,) = acme_home.revisions("net")
    assert rev.certificate_pem and rev.chain_pem
    verify_chain(
        rev.certificate_pem,
        rev.chain_pem,
        lenient_pebble.root_pem,
        ["*.example.net", "example.net"],
    )
    assert txt_records(route53, zone_id) == {}


def test_route53_solver_publishes_both_values_and_keeps_foreign_ones(route53: Any) -> None:
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference="certman-solver")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "_acme-challenge.example.com.",
                        "Type": "TXT",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": '"someone-else"'}],
                    },
                }
            ]
        },
    )
    solver = route53_solver(route53, setting="[test]")
    requests = [
        ChallengeRequest(
            kind="dns-01",
            domain="example.com",
            token=f"t{i}",
            key_authorization=f"t{i}.x",
            txt_name="_acme-challenge.example.com",
            txt_value=value,
        )
        for i, value in enumerate(["value-wildcard", "value-apex"])
    ]
    solver.perform(requests)
    assert sorted(txt_records(route53, zone_id)["_acme-challenge.example.com."]) == [
        '"someone-else"',
        '"value-apex"',
        '"value-wildcard"',
    ]
    solver.cleanup(requests)
    assert txt_records(route53, zone_id) == {"_acme-challenge.example.com.": ['"someone-else"']}
    assert "hosted zones visible" in solver.check()


def test_route53_without_a_matching_zone_names_hosted_zone_id(route53: Any) -> None:
    from certman.errors import ConfigError

    solver = route53_solver(route53, setting="[x]")
    request = ChallengeRequest(
        kind="dns-01",
        domain="nowhere.test",
        token="t",
        key_authorization="t.x",
        txt_name="_acme-challenge.nowhere.test",
        txt_value="v",
    )
    with pytest.raises(ConfigError, match="hosted_zone_id"):
        solver.perform([request])


def test_route53_cleanup_removes_every_name_even_after_one_fails(route53: Any) -> None:
    from certman.errors import CertmanError

    zone = route53.create_hosted_zone(Name="example.com.", CallerReference="certman-cleanup")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    solver = route53_solver(route53, setting="[x]")

    def request(txt_name: str, value: str) -> ChallengeRequest:
        domain = txt_name.removeprefix("_acme-challenge.")
        return ChallengeRequest(
            kind="dns-01",
            domain=domain,
            token=value,
            key_authorization=f"{value}.x",
            txt_name=txt_name,
            txt_value=value,
        )

    published = request("_acme-challenge.www.example.com", "value-www")
    homeless = request("_acme-challenge.nowhere.test", "value-nowhere")  # no zone holds it
    with pytest.raises(CertmanError):
        solver.perform([published, homeless])  # fails half-way: one record is out there
    assert txt_records(route53, zone_id) == {"_acme-challenge.www.example.com.": ['"value-www"']}
    with pytest.raises(CertmanError, match=r"nowhere\.test"):
        solver.cleanup([homeless, published])  # the failing name first
    assert txt_records(route53, zone_id) == {}, "the other names are cleaned all the same"


# --- valid authorizations are skipped ----------------------------------------------------


@pytest.fixture(scope="module")
def reusing_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A Pebble that always hands back a valid authorization it already has."""
    with Pebble(tmp_path_factory.mktemp("pebble-reuse"), PebbleOptions(authz_reuse=100)) as p:
        yield p


def test_an_already_valid_authorization_is_not_solved_again(
    acme_home: AcmeHome, reusing_pebble: Pebble, tmp_path: Path
) -> None:
    acme_home.pebble = reusing_pebble
    hook, log = write_hook(tmp_path, reusing_pebble)
    acme_home.configure(
        "dns",
        directory=reusing_pebble.directory_url,
        ca_bundle=str(reusing_pebble.ca_bundle),
        challenge="dns-01",
        dns_provider="exec",
        dns_hook=str(hook),
    )
    assert acme_home.issue("first", "reuse.example.org", issuer="dns").exit_code == 0
    acme_home.verified("first", "reuse.example.org")
    solved = hook_calls(log)
    assert [c["CERTMAN_ACME_ACTION"] for c in solved] == ["set", "clear"]
    result = acme_home.issue("second", "reuse.example.org", issuer="dns")
    assert result.exit_code == 0, result.stderr
    acme_home.verified("second", "reuse.example.org")
    assert hook_calls(log) == solved, "the valid authorization was reused, not solved again"
