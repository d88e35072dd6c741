"""The issuer contract, run over every backend (the private CA; ACME on Pebble, without and
with ARI): a CSR becomes a certificate for exactly its identifiers, with a chain that
verifies; revocation, CRLs and renewal windows where the backend offers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certman.contracts import supports
from certman.contracts.issuer import (
    CRLRequest,
    IssueRequest,
    IssueResponse,
    RenewalInfoRequest,
    RevokedEntry,
    RevokeRequest,
    SupportsCRL,
    SupportsRenewalInfo,
    SupportsRevoke,
)
from certman.models import KeyType, RevocationReason
from tests.conformance.conftest import IssuerBackend, unique


def issue(backend: IssuerBackend, *identifiers: str) -> tuple[IssueResponse, bytes]:
    """Issue for a fresh EC key's CSR; the response and the key (PKCS#8 DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(i) for i in identifiers]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    response = backend.runtime.issuer(backend.issuer_name).issue(
        IssueRequest(
            name=identifiers[0],
            revision=1,
            identifiers=identifiers,
            csr_pem=csr.public_bytes(serialization.Encoding.PEM),
            key_type=KeyType.EC_P256,
            validity=timedelta(days=30),
            now=datetime.now(UTC),
        )
    )
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return response, der


def names(backend: IssuerBackend) -> tuple[str, str]:
    base = unique("conformance") + ".example.com"
    return base, "www." + base


def leaf_of(response: IssueResponse) -> x509.Certificate:
    return x509.load_pem_x509_certificate(response.certificate_pem)


def test_a_csr_becomes_a_certificate_for_exactly_its_identifiers_that_verifies(
    issuer_backend: IssuerBackend,
) -> None:
    assert issuer_backend.roots_pem is not None
    identifiers = names(issuer_backend)
    response, _ = issue(issuer_backend, *identifiers)

    leaf = leaf_of(response)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(identifiers)
    assert san.get_values_for_type(x509.IPAddress) == []
    intermediates = x509.load_pem_x509_certificates(response.chain_pem)
    store = Store(x509.load_pem_x509_certificates(issuer_backend.roots_pem()))
    verifier = PolicyBuilder().store(store).time(datetime.now(UTC))
    for name in identifiers:
        verifier.build_server_verifier(x509.DNSName(name)).verify(leaf, intermediates)
    with pytest.raises(VerificationError):
        verifier.build_server_verifier(x509.DNSName("other.example.com")).verify(
            leaf, intermediates
        )


def test_a_revoked_certificate_is_revoked_at_the_ca_and_revoking_again_is_no_error(
    issuer_backend: IssuerBackend,
) -> None:
    issuer = issuer_backend.runtime.issuer(issuer_backend.issuer_name)
    issuer_backend.skip_unless("revoke")
    if not supports(issuer, SupportsRevoke):
        pytest.skip(f"{issuer_backend.type_name} does not implement SupportsRevoke")
    assert issuer_backend.revoked is not None
    response, key_der = issue(issuer_backend, *names(issuer_backend))
    serial = leaf_of(response).serial_number
    assert not issuer_backend.revoked(serial)

    request = RevokeRequest(
        certificate_pem=response.certificate_pem,
        reason=RevocationReason.KEY_COMPROMISE,
        now=datetime.now(UTC),
        certificate_key=lambda: key_der,
    )
    issuer.revoke(request)  # type: ignore[attr-defined]
    assert issuer_backend.revoked(serial)
    issuer.revoke(request)  # type: ignore[attr-defined]


def test_a_crl_lists_every_entry_with_its_reason_signed_by_the_issuer(
    issuer_backend: IssuerBackend,
) -> None:
    issuer = issuer_backend.runtime.issuer(issuer_backend.issuer_name)
    issuer_backend.skip_unless("crl")
    if not supports(issuer, SupportsCRL):
        pytest.skip(f"{issuer_backend.type_name} does not implement SupportsCRL")
    response, _ = issue(issuer_backend, *names(issuer_backend))
    serial = leaf_of(response).serial_number
    now = datetime.now(UTC).replace(microsecond=0)
    entry = RevokedEntry(serial=serial, revoked_at=now, reason=RevocationReason.SUPERSEDED)

    crl_pem = issuer.crl(CRLRequest(entries=(entry,), number=7, now=now)).crl_pem  # type: ignore[attr-defined]

    crl = x509.load_pem_x509_crl(crl_pem)
    signer = x509.load_pem_x509_certificates(response.chain_pem)[0]
    assert crl.is_signature_valid(signer.public_key())  # type: ignore[arg-type]
    assert crl.issuer == signer.subject
    revoked = crl.get_revoked_certificate_by_serial_number(serial)
    assert revoked is not None
    assert revoked.revocation_date_utc == now
    reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.superseded
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7


def test_renewal_info_is_the_servers_window_or_none_without_ari(
    issuer_backend: IssuerBackend,
) -> None:
    issuer = issuer_backend.runtime.issuer(issuer_backend.issuer_name)
    issuer_backend.skip_unless("renewal-info")
    if not supports(issuer, SupportsRenewalInfo):
        pytest.skip(f"{issuer_backend.type_name} does not implement SupportsRenewalInfo")
    response, _ = issue(issuer_backend, *names(issuer_backend))
    chain = x509.load_pem_x509_certificates(response.chain_pem)
    ari = issuer_backend.extra.get("ari")
    if ari is not None:
        from tests.acme.ari_server import Window

        now = datetime.now(UTC).replace(microsecond=0)
        ari.window = Window(start=now + timedelta(days=10), end=now + timedelta(days=12))

    answer = issuer.renewal_info(  # type: ignore[attr-defined]
        RenewalInfoRequest(
            certificate_pem=response.certificate_pem,
            issuer_pem=chain[0].public_bytes(serialization.Encoding.PEM),
            now=datetime.now(UTC),
        )
    )

    if ari is None:  # the server offers no renewalInfo: advisory, so no answer, no error
        assert answer is None
    else:
        assert answer is not None
        assert (answer.window_start, answer.window_end) == (ari.window.start, ari.window.end)
        assert answer.retry_after > datetime.now(UTC)
