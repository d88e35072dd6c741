"""PEM, fingerprint and serial encodings the core stores."""

from __future__ import annotations

import hashlib

import pytest
from certman.ca import CAHierarchy
from certman.ca.certificates import (
    certificate_to_pem,
    certificates_to_pem,
    der_certificate_to_pem,
    fingerprint_sha256,
    load_certificate_pem,
    serial_hex,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certman.errors import ValidationError


def test_fingerprint_is_lowercase_sha256_hex_of_der(hierarchy: CAHierarchy) -> None:
    cert = hierarchy.root_certificate
    der = cert.public_bytes(serialization.Encoding.DER)
    assert fingerprint_sha256(cert) == hashlib.sha256(der).hexdigest()


def test_serial_hex_is_lowercase_without_leading_zeros(hierarchy: CAHierarchy) -> None:
    cert = hierarchy.root_certificate
    text = serial_hex(cert)
    assert text == text.lower() and not text.startswith("0")
    assert int(text, 16) == cert.serial_number


def test_certificate_pem_round_trips(hierarchy: CAHierarchy) -> None:
    pem = certificate_to_pem(hierarchy.intermediate_certificate)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert load_certificate_pem(pem) == hierarchy.intermediate_certificate


def test_certificates_pem_keeps_order(hierarchy: CAHierarchy) -> None:
    pem = certificates_to_pem([hierarchy.intermediate_certificate, hierarchy.root_certificate])
    loaded = x509.load_pem_x509_certificates(pem)
    assert loaded == [hierarchy.intermediate_certificate, hierarchy.root_certificate]


def test_load_certificate_pem_names_the_field() -> None:
    with pytest.raises(ValidationError, match="chain_pem"):
        load_certificate_pem(b"nope", field="chain_pem")


def test_pem_made_from_der_is_byte_for_byte_what_cryptography_writes(
    hierarchy: CAHierarchy,
) -> None:
    for cert in (hierarchy.root_certificate, hierarchy.intermediate_certificate):
        der = cert.public_bytes(serialization.Encoding.DER)
        assert der_certificate_to_pem(der) == certificate_to_pem(cert)
        assert x509.load_pem_x509_certificate(der_certificate_to_pem(der)) == cert
