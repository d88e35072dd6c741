"""PrivateCA: chains that verify, policy refusals at issuance, and the work per leaf."""

from __future__ import annotations

import ipaddress
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from certman.ca import (
    CAHierarchy,
    PrivateCA,
    SigningPolicy,
    certificate_to_pem,
    generate_private_key,
)
from certman.ca.keys import signature_hash_for
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certman.contracts.issuer import Issuer, PrecheckRequest, SupportsCRL, SupportsPrecheck
from certman.errors import PolicyError, ValidationError
from certman.models import KeyType

from .conftest import NOW, IssueRequestFactory, make_csr

OPENSSL = "/usr/bin/openssl"


def verify_with_cryptography(
    hierarchy: CAHierarchy, leaf_pem: bytes, chain_pem: bytes, name: x509.GeneralName
) -> None:
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    chain = x509.load_pem_x509_certificates(chain_pem)
    verifier = (
        PolicyBuilder()
        .store(Store([hierarchy.root_certificate]))
        .time(NOW)
        .build_server_verifier(name)  # type: ignore[arg-type]
    )
    verifier.verify(leaf, chain)


def openssl_verify(
    tmp_path: Path, root: x509.Certificate, chain_pem: bytes, leaf_pem: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root.pem").write_bytes(certificate_to_pem(root))
    (tmp_path / "intermediate.pem").write_bytes(chain_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    return subprocess.run(
        [
            OPENSSL, "verify", "-x509_strict", "-attime", str(int(NOW.timestamp())),
            "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "leaf.pem",
        ],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_private_ca_implements_the_issuer_protocols(authority: PrivateCA) -> None:
    assert isinstance(authority, Issuer)
    assert isinstance(authority, SupportsPrecheck)
    assert isinstance(authority, SupportsCRL)
    assert authority.name == "default"
    assert "key" not in repr(authority)


def test_chain_verifies_with_cryptography(
    authority: PrivateCA, hierarchy: CAHierarchy, issue_request: IssueRequestFactory
) -> None:
    response = authority.issue(issue_request(("www.example.com", "192.0.2.7")))
    verify_with_cryptography(
        hierarchy, response.certificate_pem, response.chain_pem, x509.DNSName("www.example.com")
    )
    verify_with_cryptography(
        hierarchy,
        response.certificate_pem,
        response.chain_pem,
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
    )


def test_chain_verifies_with_openssl(
    authority: PrivateCA,
    hierarchy: CAHierarchy,
    issue_request: IssueRequestFactory,
    tmp_path: Path,
) -> None:
    response = authority.issue(issue_request())
    result = openssl_verify(
        tmp_path, hierarchy.root_certificate, response.chain_pem, response.certificate_pem
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leaf.pem: OK" in result.stdout


def test_chain_pem_is_the_intermediate_only(
    authority: PrivateCA, hierarchy: CAHierarchy, issue_request: IssueRequestFactory
) -> None:
    response = authority.issue(issue_request())
    assert x509.load_pem_x509_certificates(response.chain_pem) == [
        hierarchy.intermediate_certificate
    ]


def test_constrained_chain_verifies_for_names_inside_the_constraints(
    constrained_authority: PrivateCA,
    constrained_hierarchy: CAHierarchy,
    issue_request: IssueRequestFactory,
    tmp_path: Path,
) -> None:
    response = constrained_authority.issue(issue_request(("*.example.com", "example.com")))
    verify_with_cryptography(
        constrained_hierarchy,
        response.certificate_pem,
        response.chain_pem,
        x509.DNSName("api.example.com"),
    )
    result = openssl_verify(
        tmp_path,
        constrained_hierarchy.root_certificate,
        response.chain_pem,
        response.certificate_pem,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _force_sign(hierarchy: CAHierarchy, names: list[x509.GeneralName]) -> bytes:
    """A leaf that bypasses the policy, to show the name constraints stop it anyway."""
    key = generate_private_key(KeyType.EC_P256)
    intermediate = hierarchy.intermediate_certificate
    ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(hierarchy.intermediate_key, signature_hash_for(hierarchy.intermediate_key))
    )
    return certificate_to_pem(cert)


@pytest.mark.parametrize(
    "name",
    [x509.DNSName("www.evil.com"), x509.IPAddress(ipaddress.ip_address("192.0.2.7"))],
    ids=["dns", "ip"],
)
def test_name_constraints_reject_a_forced_leaf_outside_them(
    constrained_hierarchy: CAHierarchy, name: x509.GeneralName, tmp_path: Path
) -> None:
    leaf_pem = _force_sign(constrained_hierarchy, [name])
    chain_pem = certificate_to_pem(constrained_hierarchy.intermediate_certificate)
    result = openssl_verify(tmp_path, constrained_hierarchy.root_certificate, chain_pem, leaf_pem)
    assert result.returncode != 0
    assert "subtree violation" in result.stdout + result.stderr
    with pytest.raises(VerificationError):
        verify_with_cryptography(constrained_hierarchy, leaf_pem, chain_pem, name)


def test_issue_refuses_domain_outside_permitted_domains(
    constrained_authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    with pytest.raises(PolicyError, match=r"Domain 'x\.evil\.com' is outside .* CA 'corp'"):
        constrained_authority.issue(issue_request(("www.example.com", "x.evil.com")))


def test_issue_refuses_validity_over_max_validity(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    with pytest.raises(PolicyError, match="validity 400d exceeds the max_validity 397d"):
        authority.issue(issue_request(validity=timedelta(days=400)))


@pytest.mark.parametrize("validity", [timedelta(0), timedelta(seconds=-1)])
def test_issue_refuses_zero_or_negative_validity(
    authority: PrivateCA, issue_request: IssueRequestFactory, validity: timedelta
) -> None:
    with pytest.raises(ValidationError, match="validity must be longer than zero"):
        authority.issue(issue_request(validity=validity))


def test_issue_refuses_disallowed_key_type(
    constrained_authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    with pytest.raises(PolicyError, match="Key type rsa-4096 is not allowed by CA 'corp'"):
        constrained_authority.issue(issue_request(key_type=KeyType.RSA_4096))


def test_issue_refuses_bad_wildcard(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    with pytest.raises(PolicyError, match=r"Wildcard domain '\*\.com'"):
        authority.issue(issue_request(("*.com",), csr_pem=make_csr()[1]))


def test_issue_refuses_csr_key_type_mismatch(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    _, csr_pem = make_csr(key=generate_private_key(KeyType.EC_P384))
    with pytest.raises(ValidationError, match="CSR's key is ec-p384 but key_type is ec-p256"):
        authority.issue(issue_request(csr_pem=csr_pem, key_type=KeyType.EC_P256))


def test_issue_refuses_tampered_csr_signature(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    _, csr_pem = make_csr()
    csr = x509.load_pem_x509_csr(csr_pem)
    der = csr.public_bytes(serialization.Encoding.DER)
    # Flip the last byte of the signature (inside ECDSA's s): still parses, no longer verifies.
    assert der.endswith(csr.signature)
    forged = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 0x01]))
    forged_pem = forged.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValidationError, match="CSR signature does not verify"):
        authority.issue(issue_request(csr_pem=forged_pem))


def test_issue_refuses_malformed_csr(
    authority: PrivateCA, issue_request: IssueRequestFactory
) -> None:
    with pytest.raises(ValidationError, match="csr_pem"):
        authority.issue(issue_request(csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"))


def test_issue_refuses_leaf_outliving_the_intermediate(
    hierarchy: CAHierarchy, issue_request: IssueRequestFactory
) -> None:
    authority = PrivateCA.from_hierarchy(
        hierarchy, SigningPolicy(max_validity=timedelta(days=4000))
    )
    with pytest.raises(PolicyError, match="after its issuing CA expires"):
        authority.issue(issue_request(validity=timedelta(days=1900)))


def test_precheck_refuses_what_issue_would_refuse(constrained_authority: PrivateCA) -> None:
    ok = PrecheckRequest(
        identifiers=("a.example.com",),
        key_type=KeyType.EC_P256,
        validity=timedelta(days=90),
        now=NOW,
    )
    constrained_authority.precheck(ok)
    with pytest.raises(PolicyError, match=r"x\.evil\.com"):
        constrained_authority.precheck(
            PrecheckRequest(
                identifiers=("x.evil.com",),
                key_type=KeyType.EC_P256,
                validity=timedelta(days=90),
                now=NOW,
            )
        )
    with pytest.raises(PolicyError, match="after its issuing CA expires"):
        constrained_authority.precheck(
            PrecheckRequest(
                identifiers=("a.example.com",),
                key_type=KeyType.EC_P256,
                validity=timedelta(days=90),
                now=NOW + timedelta(days=1800),
            )
        )


def test_constructor_refuses_key_not_matching_the_intermediate(hierarchy: CAHierarchy) -> None:
    with pytest.raises(ValidationError, match="does not match its intermediate certificate"):
        PrivateCA(
            name="default",
            root_certificate=hierarchy.root_certificate,
            intermediate_certificate=hierarchy.intermediate_certificate,
            intermediate_key=hierarchy.root_key,
            policy=SigningPolicy(),
        )


def test_constructor_refuses_intermediate_not_under_root(
    hierarchy: CAHierarchy, constrained_hierarchy: CAHierarchy
) -> None:
    with pytest.raises(ValidationError, match="not signed by its root"):
        PrivateCA(
            name="default",
            root_certificate=constrained_hierarchy.root_certificate,
            intermediate_certificate=hierarchy.intermediate_certificate,
            intermediate_key=hierarchy.intermediate_key,
            policy=SigningPolicy(),
        )


class CountingSigner(ec.EllipticCurvePrivateKey):
    """An external signer (as an HSM key would be) that counts its signatures."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.signatures = 0

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        self.signatures += 1
        return self._key.sign(data, signature_algorithm)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise NotImplementedError

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._key.curve

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise AssertionError("the CA must never serialise its intermediate key")

    def __copy__(self) -> CountingSigner:
        return self

    def __deepcopy__(self, memo: object) -> CountingSigner:
        return self


def test_each_issue_costs_exactly_one_intermediate_signature(
    hierarchy: CAHierarchy, issue_request: IssueRequestFactory
) -> None:
    """Per leaf: one signature by the intermediate, no key serialisation, a shared chain."""
    assert isinstance(hierarchy.intermediate_key, ec.EllipticCurvePrivateKey)
    signer = CountingSigner(hierarchy.intermediate_key)
    authority = PrivateCA(
        name="default",
        root_certificate=hierarchy.root_certificate,
        intermediate_certificate=hierarchy.intermediate_certificate,
        intermediate_key=signer,
        policy=SigningPolicy(),
    )
    # Loading the CA signs a probe leaf twice (builder and DER encoder must agree); then
    # each leaf costs one signature.
    assert signer.signatures == 2
    responses = [authority.issue(issue_request()) for _ in range(5)]

    assert signer.signatures == 2 + 5
    for response in responses:
        leaf = x509.load_pem_x509_certificate(response.certificate_pem)
        leaf.verify_directly_issued_by(hierarchy.intermediate_certificate)
    assert all(r.chain_pem is responses[0].chain_pem for r in responses)
