"""CA signing keys generated in, and used from, a real SoftHSM2 token."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certman.errors import KeyWrapError, ValidationError
from certman.keywrap.pkcs11_keys import generate_signing_key, load_signing_key
from certman.keywrap.pkcs11_token import Pkcs11Token
from certman.models import KeyType
from certman.pki import signature_hash_for
from tests.components.softhsm import SoftHsm

from .conftest import TOKEN

NOW = datetime.now(UTC)


@pytest.fixture
def token(softhsm: SoftHsm, hsm_pin: str) -> Pkcs11Token:
    return Pkcs11Token(module=str(softhsm.module), token_label=TOKEN, pin_env="CERTMAN_HSM_PIN")


def self_signed(key: object) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HSM test root")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048])
def test_a_certificate_signed_in_the_token_verifies_with_openssl(
    token: Pkcs11Token, key_label: str, key_type: KeyType, tmp_path: Path
) -> None:
    key = generate_signing_key(token, key_label, key_type)
    cert = self_signed(key)

    pem = tmp_path / "root.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pem), str(pem)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_a_crl_signed_by_a_reloaded_key_verifies(token: Pkcs11Token, key_label: str) -> None:
    generate_signing_key(token, key_label, KeyType.EC_P256)
    key = load_signing_key(token, key_label)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HSM CA")])

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .sign(key, signature_hash_for(key))
    )

    assert crl.is_signature_valid(key.public_key())


def test_the_private_half_never_leaves_the_token(token: Pkcs11Token, key_label: str) -> None:
    from pkcs11 import Attribute, ObjectClass

    key = generate_signing_key(token, key_label, KeyType.EC_P256)

    with pytest.raises(ValidationError, match="cannot be exported"):
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    stored = token.with_session(
        lambda s: s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
    )
    assert stored[Attribute.SENSITIVE] is True
    assert stored[Attribute.EXTRACTABLE] is False


def test_a_label_in_use_is_never_taken_over(token: Pkcs11Token, key_label: str) -> None:
    generate_signing_key(token, key_label, KeyType.EC_P256)

    with pytest.raises(KeyWrapError, match="already holds a key labelled"):
        generate_signing_key(token, key_label, KeyType.EC_P256)


def test_a_missing_key_names_its_uri(token: Pkcs11Token, key_label: str) -> None:
    with pytest.raises(KeyWrapError, match=f"object={key_label};type=private.*restore it"):
        load_signing_key(token, key_label)
