"""The root and intermediate profiles (RFC 5280 4.2.1, CA/Browser Forum BR 7.1.2.1 and 7.1.2.2)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from certman.ca import CAHierarchy, SigningPolicy, create_hierarchy
from certman.ca.keys import key_type_of
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certman.errors import ValidationError
from certman.models import KeyType

from .conftest import NOW


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def test_root_is_self_signed_ca_with_critical_basic_constraints(hierarchy: CAHierarchy) -> None:
    root = hierarchy.root_certificate
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None


def test_root_key_usage_is_cert_and_crl_sign_only(hierarchy: CAHierarchy) -> None:
    ku = ext(hierarchy.root_certificate, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature


def test_root_has_subject_key_identifier_of_its_key(hierarchy: CAHierarchy) -> None:
    ski = ext(hierarchy.root_certificate, x509.SubjectKeyIdentifier)
    expected = x509.SubjectKeyIdentifier.from_public_key(hierarchy.root_key.public_key())
    assert ski.value == expected and not ski.critical


def test_intermediate_is_signed_by_root_with_pathlen_zero(hierarchy: CAHierarchy) -> None:
    intermediate = hierarchy.intermediate_certificate
    intermediate.verify_directly_issued_by(hierarchy.root_certificate)
    bc = ext(intermediate, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0


def test_intermediate_key_usage_includes_digital_signature(hierarchy: CAHierarchy) -> None:
    ku = ext(hierarchy.intermediate_certificate, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_cert_sign and ku.value.crl_sign


def test_intermediate_aki_is_root_ski(hierarchy: CAHierarchy) -> None:
    aki = ext(hierarchy.intermediate_certificate, x509.AuthorityKeyIdentifier)
    root_ski = ext(hierarchy.root_certificate, x509.SubjectKeyIdentifier)
    assert aki.value.key_identifier == root_ski.value.digest
    assert ext(hierarchy.intermediate_certificate, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(hierarchy.intermediate_key.public_key())
    )


def test_intermediate_eku_is_server_auth(hierarchy: CAHierarchy) -> None:
    eku = ext(hierarchy.intermediate_certificate, x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_intermediate_eku_adds_client_auth_when_policy_asks(
    constrained_hierarchy: CAHierarchy,
) -> None:
    eku = ext(constrained_hierarchy.intermediate_certificate, x509.ExtendedKeyUsage)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku.value


def test_unconstrained_policy_gives_no_name_constraints(hierarchy: CAHierarchy) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        ext(hierarchy.intermediate_certificate, x509.NameConstraints)


def test_permitted_domains_become_critical_name_constraints(
    constrained_hierarchy: CAHierarchy,
) -> None:
    nc = ext(constrained_hierarchy.intermediate_certificate, x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.DNSName("example.com")]
    # allow_ip=False: every IP address is excluded (BR 7.1.2.5.2).
    assert nc.value.excluded_subtrees == [
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    ]


def test_ca_subjects_carry_common_name_and_organization(hierarchy: CAHierarchy) -> None:
    root_cn = hierarchy.root_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    int_cn = hierarchy.intermediate_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert root_cn[0].value == "certman Test Root"
    assert int_cn[0].value == "certman Test Intermediate"
    org = hierarchy.root_certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert org[0].value == "certman"


def test_ca_certificates_are_backdated_one_hour(hierarchy: CAHierarchy) -> None:
    for cert in (hierarchy.root_certificate, hierarchy.intermediate_certificate):
        assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert hierarchy.root_certificate.not_valid_after_utc == NOW + timedelta(days=3650)
    assert hierarchy.intermediate_certificate.not_valid_after_utc == NOW + timedelta(days=1825)


def test_hierarchy_uses_the_requested_key_type(constrained_hierarchy: CAHierarchy) -> None:
    assert key_type_of(constrained_hierarchy.root_key) is KeyType.EC_P384
    assert key_type_of(constrained_hierarchy.intermediate_key) is KeyType.EC_P384


def test_intermediate_cannot_outlive_root() -> None:
    with pytest.raises(ValidationError, match="intermediate_validity 3651d exceeds root_validity"):
        create_hierarchy(
            name="x",
            common_name="X",
            key_type=KeyType.EC_P256,
            policy=SigningPolicy(),
            now=NOW,
            intermediate_validity=timedelta(days=3651),
        )


def test_common_name_over_64_characters_is_refused() -> None:
    with pytest.raises(ValidationError, match="common_name"):
        create_hierarchy(
            name="x",
            common_name="x" * 60,
            key_type=KeyType.EC_P256,
            policy=SigningPolicy(),
            now=NOW,
        )
