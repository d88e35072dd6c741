"""Planned issuance: the serial and validity are chosen first, and signing them is repeatable."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from certman.ca import PrivateCA, SigningPolicy, create_hierarchy, generate_private_key
from certman.ca.hierarchy import BACKDATE
from certman.ca.serials import SERIAL_BITS

from certman.contracts.issuer import IssuePlanRequest, KeyIssueRequest, SupportsIssuePlan
from certman.errors import PolicyError, ValidationError
from certman.models import KeyType
from certman.pki import certificate_facts, public_key_der

from .conftest import NOW, IssueRequestFactory, make_csr


@pytest.fixture(scope="module")
def rsa_authority() -> PrivateCA:
    hierarchy = create_hierarchy(
        name="rsa",
        common_name="certman RSA Test",
        key_type=KeyType.RSA_2048,
        policy=SigningPolicy(),
        now=NOW,
    )
    return PrivateCA.from_hierarchy(hierarchy, SigningPolicy())


def key_request(*, validity: timedelta = timedelta(days=90), **changes: object) -> KeyIssueRequest:
    key = generate_private_key(KeyType.EC_P256)
    request = KeyIssueRequest(
        name="web",
        revision=1,
        identifiers=("www.example.com",),
        public_key_der=public_key_der(key.public_key()),
        key_type=KeyType.EC_P256,
        validity=validity,
        now=NOW,
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def test_the_private_ca_plans_its_issuance(authority: PrivateCA) -> None:
    assert isinstance(authority, SupportsIssuePlan)
    plan = authority.plan_issue(IssuePlanRequest(validity=timedelta(days=90), now=NOW))
    assert 0 < plan.serial < 2**SERIAL_BITS
    assert plan.not_before == NOW - BACKDATE
    assert plan.not_after == NOW + timedelta(days=90)


def test_a_plan_is_signed_exactly_as_planned(authority: PrivateCA) -> None:
    plan = authority.plan_issue(IssuePlanRequest(validity=timedelta(days=90), now=NOW))
    later = NOW + timedelta(minutes=20)  # the resume after a crash
    request = key_request(now=later, serial=plan.serial, not_before=plan.not_before)
    facts = certificate_facts(authority.issue_for_key(request).certificate_pem)
    assert facts.serial == format(plan.serial, "x")
    assert (facts.not_before, facts.not_after) == (plan.not_before, plan.not_after)


@pytest.mark.parametrize("which", ["ec", "rsa"])
def test_signing_the_same_plan_twice_gives_the_same_certificate(
    authority: PrivateCA, rsa_authority: PrivateCA, which: str
) -> None:
    ca = authority if which == "ec" else rsa_authority
    plan = ca.plan_issue(IssuePlanRequest(validity=timedelta(days=90), now=NOW))
    request = key_request(serial=plan.serial, not_before=plan.not_before)
    first = ca.issue_for_key(request).certificate_pem
    again = ca.issue_for_key(replace(request, now=NOW + timedelta(minutes=5)))
    assert again.certificate_pem == first  # byte for byte: the same certificate


def test_signing_a_planned_csr_twice_gives_the_same_certificate(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    plan = authority.plan_issue(IssuePlanRequest(validity=timedelta(days=90), now=NOW))
    _, csr = make_csr()
    request = replace(issue_request(csr_pem=csr), serial=plan.serial, not_before=plan.not_before)
    assert authority.issue(request).certificate_pem == authority.issue(request).certificate_pem


def test_without_a_plan_each_signature_is_a_new_serial(authority: PrivateCA) -> None:
    request = key_request()
    first = certificate_facts(authority.issue_for_key(request).certificate_pem)
    second = certificate_facts(authority.issue_for_key(request).certificate_pem)
    assert first.serial != second.serial


def test_a_plan_from_the_future_is_refused(authority: PrivateCA) -> None:
    plan = authority.plan_issue(
        IssuePlanRequest(validity=timedelta(days=90), now=NOW + timedelta(hours=3))
    )
    with pytest.raises(ValidationError, match=r"not_before .* is in the future"):
        authority.issue_for_key(key_request(serial=plan.serial, not_before=plan.not_before))


def test_a_plan_whose_validity_has_ended_is_refused(authority: PrivateCA) -> None:
    plan = authority.plan_issue(IssuePlanRequest(validity=timedelta(days=1), now=NOW))
    request = key_request(
        validity=timedelta(days=1),
        now=NOW + timedelta(days=2),
        serial=plan.serial,
        not_before=plan.not_before,
    )
    with pytest.raises(PolicyError, match="planned validity ended"):
        authority.issue_for_key(request)


@pytest.mark.parametrize("serial", [0, -5, 2**SERIAL_BITS])
def test_a_serial_outside_the_baseline_range_is_refused(authority: PrivateCA, serial: int) -> None:
    with pytest.raises(ValidationError, match="serial must be a positive integer"):
        authority.issue_for_key(key_request(serial=serial, not_before=NOW - BACKDATE))


def test_the_policy_still_applies_to_a_planned_issuance(authority: PrivateCA) -> None:
    plan = authority.plan_issue(IssuePlanRequest(validity=timedelta(days=90), now=NOW))
    request = key_request(
        validity=timedelta(days=500), serial=plan.serial, not_before=plan.not_before
    )
    with pytest.raises(PolicyError, match="validity"):
        authority.issue_for_key(request)


@pytest.mark.parametrize("with_key_object", [False, True])
def test_the_facts_returned_are_those_of_the_certificate_signed(
    authority: PrivateCA, with_key_object: bool
) -> None:
    key = generate_private_key(KeyType.EC_P256)
    request = key_request(
        public_key_der=public_key_der(key.public_key()),
        public_key=key.public_key() if with_key_object else None,
    )
    response = authority.issue_for_key(request)
    assert response.facts == certificate_facts(response.certificate_pem)
    assert response.facts is not None
    assert response.facts.public_key_der == request.public_key_der
