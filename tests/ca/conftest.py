"""Shared fixtures for the private CA tests: one EC hierarchy per policy, and CSRs."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from certman.ca import CAHierarchy, PrivateCA, SigningPolicy, create_hierarchy, generate_private_key
from certman.ca.keys import PrivateKey, signature_hash_for
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certman.contracts.issuer import IssueRequest
from certman.models import KeyType

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

CONSTRAINED_POLICY = SigningPolicy(
    permitted_domains=("example.com",),
    allowed_key_types=(KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048),
    allow_ip=False,
    client_auth=True,
    crl_url="http://crl.example.com/default.crl",
)


def make_csr(
    names: tuple[str, ...] = ("www.example.com",),
    key: PrivateKey | None = None,
    subject_cn: str | None = None,
) -> tuple[PrivateKey, bytes]:
    """A PEM CSR for ``names`` (the subject is separate, to show the CA ignores it)."""
    key = key or generate_private_key(KeyType.EC_P256)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)] if subject_cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    dns_names = [x509.DNSName(n) for n in names if not _is_ip(n)]
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(dns_names), critical=False)
    csr = builder.sign(key, signature_hash_for(key))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="session")
def hierarchy() -> CAHierarchy:
    return create_hierarchy(
        name="default",
        common_name="certman Test",
        key_type=KeyType.EC_P256,
        policy=SigningPolicy(),
        now=NOW,
    )


@pytest.fixture(scope="session")
def authority(hierarchy: CAHierarchy) -> PrivateCA:
    return PrivateCA.from_hierarchy(hierarchy, SigningPolicy())


@pytest.fixture(scope="session")
def constrained_hierarchy() -> CAHierarchy:
    return create_hierarchy(
        name="corp",
        common_name="Corp",
        key_type=KeyType.EC_P384,
        policy=CONSTRAINED_POLICY,
        now=NOW,
    )


@pytest.fixture(scope="session")
def constrained_authority(constrained_hierarchy: CAHierarchy) -> PrivateCA:
    return PrivateCA.from_hierarchy(constrained_hierarchy, CONSTRAINED_POLICY)


IssueRequestFactory = Callable[..., IssueRequest]


@pytest.fixture
def issue_request() -> IssueRequestFactory:
    """Build an IssueRequest with a fresh P-256 CSR unless told otherwise."""

    def build(
        identifiers: tuple[str, ...] = ("www.example.com",),
        *,
        csr_pem: bytes | None = None,
        key_type: KeyType = KeyType.EC_P256,
        validity: timedelta = timedelta(days=90),
        now: datetime = NOW,
    ) -> IssueRequest:
        if csr_pem is None:
            _, csr_pem = make_csr(identifiers)
        return IssueRequest(
            name="web",
            revision=1,
            identifiers=identifiers,
            csr_pem=csr_pem,
            key_type=key_type,
            validity=validity,
            now=now,
        )

    return build
