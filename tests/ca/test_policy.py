"""SigningPolicy: every refusal raises the right error class and names what to fix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from certman.ca.policy import SigningPolicy

from certman.errors import PolicyError, ValidationError
from certman.models import KeyType

DAYS_90 = timedelta(days=90)
CORP = SigningPolicy(permitted_domains=("example.com", "Example.ORG."))


def test_default_policy_allows_any_domain_and_every_key_type() -> None:
    policy = SigningPolicy()
    for key_type in KeyType:
        policy.check(["anything.test"], key_type, DAYS_90)
    assert policy.max_validity == timedelta(days=397)


def test_check_returns_normalised_identifiers_without_duplicates() -> None:
    idents = SigningPolicy().check(
        ["WWW.Example.com.", "www.example.com", "::1"], KeyType.EC_P256, DAYS_90
    )
    assert [i.value for i in idents] == ["www.example.com", "::1"]
    assert [i.is_ip for i in idents] == [False, True]


def test_permitted_domains_are_normalised() -> None:
    assert CORP.permitted_domains == ("example.com", "example.org")


def test_name_under_a_permitted_domain_is_allowed() -> None:
    CORP.check(["example.com", "a.b.example.com", "*.example.org"], KeyType.EC_P256, DAYS_90)


def test_domain_outside_permitted_domains_is_refused() -> None:
    with pytest.raises(PolicyError) as e:
        CORP.check(["www.example.com", "x.evil.com"], KeyType.EC_P256, DAYS_90, ca="default")
    assert str(e.value) == (
        "Domain 'x.evil.com' is outside the permitted domains of CA 'default' "
        "(example.com, example.org); ask for names under those domains or use another CA."
    )
    assert e.value.exit_code == 2


def test_suffix_that_is_not_a_label_boundary_is_outside() -> None:
    with pytest.raises(PolicyError, match=r"'badexample\.com'"):
        CORP.check(["badexample.com"], KeyType.EC_P256, DAYS_90)


def test_validity_over_max_validity_is_refused_naming_both_values() -> None:
    with pytest.raises(PolicyError, match=r"validity 398d exceeds the max_validity 397d"):
        SigningPolicy().check(["a.example.com"], KeyType.EC_P256, timedelta(days=398))


@pytest.mark.parametrize("validity", [timedelta(0), timedelta(days=-1)])
def test_zero_or_negative_validity_is_a_validation_error(validity: timedelta) -> None:
    with pytest.raises(ValidationError, match="validity must be longer than zero"):
        SigningPolicy().check(["a.example.com"], KeyType.EC_P256, validity)


def test_disallowed_key_type_is_refused() -> None:
    policy = SigningPolicy(allowed_key_types=(KeyType.EC_P256,))
    with pytest.raises(PolicyError, match=r"Key type rsa-2048 is not allowed .*\(ec-p256\)"):
        policy.check(["a.example.com"], KeyType.RSA_2048, DAYS_90)


@pytest.mark.parametrize(
    "name", ["*.com", "*.*.example.com", "a*.example.com", "www.*.example.com"]
)
def test_bad_wildcard_is_refused(name: str) -> None:
    with pytest.raises(PolicyError, match="Wildcard domain"):
        SigningPolicy().check([name], KeyType.EC_P256, DAYS_90)


def test_wildcard_is_refused_when_not_allowed() -> None:
    policy = SigningPolicy(allow_wildcards=False)
    with pytest.raises(PolicyError, match=r"'\*\.example\.com' is not allowed by CA"):
        policy.check(["*.example.com"], KeyType.EC_P256, DAYS_90)


def test_wildcard_is_checked_against_permitted_domains_by_its_base() -> None:
    with pytest.raises(PolicyError, match="outside the permitted domains"):
        CORP.check(["*.evil.com"], KeyType.EC_P256, DAYS_90)


def test_ip_address_is_refused_when_not_allowed() -> None:
    policy = SigningPolicy(permitted_domains=("example.com",), allow_ip=False)
    with pytest.raises(PolicyError, match=r"IP address '10\.0\.0\.1'"):
        policy.check(["10.0.0.1"], KeyType.EC_P256, DAYS_90)


def test_ip_address_is_allowed_by_default_even_with_permitted_domains() -> None:
    CORP.check(["192.0.2.1", "2001:db8::1"], KeyType.EC_P256, DAYS_90)


def test_empty_identifiers_are_refused() -> None:
    with pytest.raises(ValidationError, match="identifiers is empty"):
        SigningPolicy().check([], KeyType.EC_P256, DAYS_90)


def test_malformed_name_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="not a valid DNS name"):
        SigningPolicy().check(["bad_name.example.com"], KeyType.EC_P256, DAYS_90)


def test_policy_refuses_zero_max_validity() -> None:
    with pytest.raises(ValidationError, match="max_validity"):
        SigningPolicy(max_validity=timedelta(0))


def test_policy_refuses_wildcard_permitted_domain() -> None:
    with pytest.raises(ValidationError, match="permitted_domains entry"):
        SigningPolicy(permitted_domains=("*.example.com",))


def test_policy_refuses_empty_allowed_key_types() -> None:
    with pytest.raises(ValidationError, match="allowed_key_types"):
        SigningPolicy(allowed_key_types=())


def test_policy_refuses_non_http_crl_url() -> None:
    with pytest.raises(ValidationError, match="crl_url"):
        SigningPolicy(crl_url="ldap://crl.example.com")


def test_policy_round_trips_through_dict() -> None:
    policy = SigningPolicy(
        max_validity=timedelta(days=30),
        permitted_domains=("example.com",),
        allowed_key_types=(KeyType.EC_P384,),
        allow_wildcards=False,
        allow_ip=False,
        client_auth=True,
        crl_url="http://crl.example.com/a.crl",
    )
    doc = policy.to_dict()
    assert doc["max_validity"] == 30 * 86400
    assert doc["allowed_key_types"] == ["ec-p384"]
    assert SigningPolicy.from_dict(doc) == policy


def test_policy_from_empty_dict_is_the_default() -> None:
    assert SigningPolicy.from_dict({}) == SigningPolicy()


def test_policy_from_dict_names_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="max_days"):
        SigningPolicy.from_dict({"max_days": 3})


def test_policy_from_dict_names_wrongly_typed_fields() -> None:
    with pytest.raises(ValidationError, match="allow_ip"):
        SigningPolicy.from_dict({"allow_ip": "yes"})
    with pytest.raises(ValidationError, match="Unknown allowed key type"):
        SigningPolicy.from_dict({"allowed_key_types": ["dsa-1024"]})
