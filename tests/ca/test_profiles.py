"""The TLS server leaf profile (CA/Browser Forum BR 7.1.2.7), checked extension by extension."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import pytest
from certman.ca import CAHierarchy, PrivateCA
from certman.ca.keys import generate_private_key
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certman.models import KeyType

from .conftest import NOW, IssueRequestFactory, make_csr


def issue(
    authority: PrivateCA, request_factory: IssueRequestFactory, *args: Any, **kwargs: Any
) -> x509.Certificate:
    response = authority.issue(request_factory(*args, **kwargs))
    return x509.load_pem_x509_certificate(response.certificate_pem)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


@pytest.fixture
def leaf(authority: PrivateCA, issue_request: IssueRequestFactory) -> x509.Certificate:
    return issue(authority, issue_request, ("www.example.com", "example.com", "192.0.2.7"))


def test_leaf_san_lists_dns_names_and_ip_addresses(leaf: x509.Certificate) -> None:
    san = ext(leaf, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.com", "example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]


def test_leaf_common_name_is_the_first_dns_name(leaf: x509.Certificate) -> None:
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])


def test_leaf_names_come_from_the_request_not_the_csr(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    _, csr_pem = make_csr(("evil.example.net",), subject_cn="evil.example.net")
    cert = issue(authority, issue_request, ("good.example.com",), csr_pem=csr_pem)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["good.example.com"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "good.example.com"


def test_leaf_without_short_dns_name_has_empty_subject_and_critical_san(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    long_name = "a" * 60 + ".example.com"
    for names in (("192.0.2.7",), (long_name,)):
        cert = issue(authority, issue_request, names)
        assert len(cert.subject) == 0
        assert ext(cert, x509.SubjectAlternativeName).critical  # RFC 5280 4.2.1.6


def test_ec_leaf_key_usage_is_digital_signature_only(leaf: x509.Certificate) -> None:
    ku = ext(leaf, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_encipherment
    assert not ku.value.key_cert_sign and not ku.value.crl_sign


def test_rsa_leaf_key_usage_adds_key_encipherment(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    _, csr_pem = make_csr(key=generate_private_key(KeyType.RSA_2048))
    cert = issue(authority, issue_request, csr_pem=csr_pem, key_type=KeyType.RSA_2048)
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment


def test_leaf_eku_is_server_auth_only_by_default(leaf: x509.Certificate) -> None:
    eku = ext(leaf, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_leaf_eku_adds_client_auth_when_policy_asks(
    constrained_authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    cert = issue(constrained_authority, issue_request)
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_basic_constraints_is_critical_and_not_a_ca(leaf: x509.Certificate) -> None:
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca and bc.value.path_length is None


def test_leaf_ski_is_of_its_key_and_aki_is_issuer_ski(
    leaf: x509.Certificate, hierarchy: CAHierarchy
) -> None:
    ski = ext(leaf, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = ext(leaf, x509.AuthorityKeyIdentifier)
    issuer_ski = ext(hierarchy.intermediate_certificate, x509.SubjectKeyIdentifier).value
    assert not aki.critical and aki.value.key_identifier == issuer_ski.digest


def test_leaf_has_no_crl_distribution_point_without_crl_url(leaf: x509.Certificate) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        ext(leaf, x509.CRLDistributionPoints)


def test_leaf_has_crl_distribution_point_when_policy_sets_crl_url(
    constrained_authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    cert = issue(constrained_authority, issue_request)
    dp = ext(cert, x509.CRLDistributionPoints)
    assert not dp.critical
    assert dp.value[0].full_name == [
        x509.UniformResourceIdentifier("http://crl.example.com/default.crl")
    ]


def test_leaf_validity_is_backdated_one_hour_and_ends_after_validity(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    cert = issue(authority, issue_request, validity=timedelta(days=30))
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)


def test_leaf_issuer_is_the_intermediate_subject(
    leaf: x509.Certificate, hierarchy: CAHierarchy
) -> None:
    assert leaf.issuer == hierarchy.intermediate_certificate.subject
    leaf.verify_directly_issued_by(hierarchy.intermediate_certificate)


def test_leaf_serials_differ(authority: PrivateCA, issue_request: IssueRequestFactory) -> None:
    serials = {issue(authority, issue_request).serial_number for _ in range(5)}
    assert len(serials) == 5
