"""CRLs signed by the intermediate (RFC 5280 section 5)."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from certman.ca import CAHierarchy, PrivateCA, certificate_to_pem
from cryptography import x509

from certman.contracts.issuer import CRLRequest, RevokedEntry
from certman.errors import ValidationError
from certman.models import RevocationReason

from .conftest import NOW

ENTRIES = (
    RevokedEntry(
        serial=0x1234, revoked_at=NOW - timedelta(days=1), reason=RevocationReason.KEY_COMPROMISE
    ),
    RevokedEntry(
        serial=0xABCDEF, revoked_at=NOW - timedelta(hours=3), reason=RevocationReason.SUPERSEDED
    ),
    RevokedEntry(serial=0x42, revoked_at=NOW, reason=RevocationReason.UNSPECIFIED),
)


@pytest.fixture(scope="module")
def crl(authority: PrivateCA) -> x509.CertificateRevocationList:
    response = authority.crl(CRLRequest(entries=ENTRIES, number=17, now=NOW))
    assert response.crl_pem.startswith(b"-----BEGIN X509 CRL-----")
    return x509.load_pem_x509_crl(response.crl_pem)


def test_crl_verifies_against_the_intermediate_public_key(
    crl: x509.CertificateRevocationList, hierarchy: CAHierarchy
) -> None:
    assert crl.is_signature_valid(hierarchy.intermediate_certificate.public_key())  # type: ignore[arg-type]
    assert not crl.is_signature_valid(hierarchy.root_certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == hierarchy.intermediate_certificate.subject


def test_crl_number_is_set(crl: x509.CertificateRevocationList) -> None:
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert number.value.crl_number == 17 and not number.critical


def test_crl_aki_is_the_intermediate_ski(
    crl: x509.CertificateRevocationList, hierarchy: CAHierarchy
) -> None:
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = hierarchy.intermediate_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert aki.key_identifier == ski.digest


def test_crl_update_times_follow_the_request(crl: x509.CertificateRevocationList) -> None:
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(days=7)


def test_crl_lists_every_serial_with_its_date_and_reason(
    crl: x509.CertificateRevocationList,
) -> None:
    assert len(crl) == len(ENTRIES)
    for entry in ENTRIES:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked is not None
        assert revoked.revocation_date_utc == entry.revoked_at
        if entry.reason is RevocationReason.UNSPECIFIED:
            # RFC 5280 5.3.1: the reasonCode extension is omitted rather than unspecified.
            assert len(revoked.extensions) == 0
        else:
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
            assert (
                reason.name
                == {
                    RevocationReason.KEY_COMPROMISE: "key_compromise",
                    RevocationReason.SUPERSEDED: "superseded",
                }[entry.reason]
            )


def test_empty_crl_is_valid(authority: PrivateCA, hierarchy: CAHierarchy) -> None:
    pem = authority.crl(CRLRequest(entries=(), number=0, now=NOW)).crl_pem
    crl = x509.load_pem_x509_crl(pem)
    assert len(crl) == 0
    assert crl.is_signature_valid(hierarchy.intermediate_certificate.public_key())  # type: ignore[arg-type]


def test_negative_crl_number_is_refused(authority: PrivateCA) -> None:
    with pytest.raises(ValidationError, match="CRL number -1"):
        authority.crl(CRLRequest(entries=(), number=-1, now=NOW))


def test_duplicate_revoked_serial_is_refused(authority: PrivateCA) -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        authority.crl(CRLRequest(entries=(ENTRIES[0], ENTRIES[0]), number=1, now=NOW))


def test_crl_is_accepted_by_openssl(
    authority: PrivateCA, hierarchy: CAHierarchy, tmp_path: Path
) -> None:
    (tmp_path / "crl.pem").write_bytes(
        authority.crl(CRLRequest(entries=ENTRIES, number=3, now=NOW)).crl_pem
    )
    (tmp_path / "ca.pem").write_bytes(certificate_to_pem(hierarchy.intermediate_certificate))
    result = subprocess.run(
        ["/usr/bin/openssl", "crl", "-in", "crl.pem", "-CAfile", "ca.pem", "-noout", "-text"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stderr + result.stdout
    assert "Key Compromise" in result.stdout
    assert re.search(r"X509v3 CRL Number:\s+3\b", result.stdout)
