"""Route 53 as the dns-01 zone: its failures go through the one botocore translation."""

from __future__ import annotations

import pytest
from certman.acme_client.solvers.contract import ChallengeRequest
from certman.acme_client.solvers.dns01 import DnsZoneSolver

from certman.aws.clients import AwsClients
from certman.aws.errors import Hints, client_error
from certman.aws.route53 import Route53Zone
from certman.errors import IssuanceError
from tests.aws.conftest import REGION, Aws
from tests.aws.faults import Fault

REQUEST = ChallengeRequest(
    kind="dns-01",
    domain="www.example.com",
    token="t",
    key_authorization="t.x",
    txt_name="_acme-challenge.www.example.com",
    txt_value="v",
)


def solver(aws: Aws) -> tuple[DnsZoneSolver, object]:
    client = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1).client(
        "route53"
    )
    client.create_hosted_zone(Name="example.com.", CallerReference="certman-throttle")
    zone = Route53Zone(client=client, hosted_zone_id=None, setting="[issuers.r53] of /c.toml")
    return DnsZoneSolver(zone=zone, timeout=10), client


@pytest.mark.parametrize("code", ["Throttling", "PriorRequestNotComplete"])
def test_route53_throttling_is_classified_as_aws_throttling_everywhere(aws: Aws, code: str) -> None:
    dns, client = solver(aws)
    Fault(client, "ChangeResourceRecordSets", code)
    with pytest.raises(IssuanceError) as caught:
        dns.perform([REQUEST])
    expected = client_error(
        "route53:ChangeResourceRecordSets",
        "the TXT record _acme-challenge.www.example.com.",
        code,
        f"injected {code}",
        IssuanceError,
        Hints(),
    )
    assert type(caught.value) is type(expected)
    assert caught.value.message == expected.message
    assert caught.value.retryable is expected.retryable is True
    assert "AWS throttled route53:ChangeResourceRecordSets" in caught.value.message


def test_a_route53_denial_names_the_permission(aws: Aws) -> None:
    dns, client = solver(aws)
    Fault(client, "ListHostedZones", "AccessDenied", status=403)
    with pytest.raises(IssuanceError, match=r"grant route53:ListHostedZones") as caught:
        dns.check()
    assert caught.value.retryable
