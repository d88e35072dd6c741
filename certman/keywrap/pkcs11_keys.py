"""CA signing keys that live in a PKCS#11 token: generated there, never extractable.

``HsmEcPrivateKey`` and ``HsmRsaPrivateKey`` are external signers: subclasses of
cryptography's private key types whose ``sign`` asks the token, so certificate, CRL and
CSR builders sign with them as with any key. SoftHSM2 only does raw CKM_ECDSA, so the
digest is computed here and (r, s) DER-encoded (RFC 3279 2.2.3); RSA signs a DigestInfo
with CKM_RSA_PKCS (PKCS#1 v1.5, RFC 8017 9.2), which every module offers.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from certman.errors import KeyWrapError, ValidationError
from certman.keywrap.pkcs11_token import Pkcs11Token, object_uri
from certman.models import KeyType

_CURVE_NAMES = {KeyType.EC_P256: "secp256r1", KeyType.EC_P384: "secp384r1"}
_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}
# RFC 8017 9.2 note 1: the DER DigestInfo prefix of each hash.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def resident_key_uri(token_label: str, key_label: str) -> str:
    return object_uri(token_label, key_label, "private")


def generate_signing_key(token: Pkcs11Token, label: str, key_type: KeyType) -> HsmPrivateKey:
    """A new key pair labelled ``label`` in the token; the private half never leaves it."""
    from pkcs11 import Attribute
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    private = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    key_id = os.urandom(16)

    def run(session: Any) -> None:
        if _find(session, label, private=True) is not None:
            raise KeyWrapError(
                f"The token {token.token_label!r} already holds a key labelled {label!r}; "
                "certman never reuses a CA key it did not create for this CA."
            )
        if key_type in _CURVE_NAMES:
            params = session.create_domain_parameters(
                P11KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVE_NAMES[key_type])},
                local=True,
            )
            params.generate_keypair(store=True, label=label, id=key_id, private_template=private)
        else:
            session.generate_keypair(
                P11KeyType.RSA,
                _RSA_BITS[key_type],
                store=True,
                label=label,
                id=key_id,
                public_template={Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                private_template=private,
            )

    token.with_session(run)
    return load_signing_key(token, label)


def load_signing_key(token: Pkcs11Token, label: str) -> HsmPrivateKey:
    """The signer for the token's key pair ``label`` (its public half read once)."""
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_ec_public_key
    from pkcs11.util.rsa import encode_rsa_public_key

    def run(session: Any) -> tuple[bytes, bool]:
        public = _find(session, label, private=False)
        if public is None or _find(session, label, private=True) is None:
            raise KeyWrapError(
                f"The CA key {resident_key_uri(token.token_label, label)} is not on the token; "
                "restore it into the HSM (certman cannot sign for this CA without it)."
            )
        if public.key_type == P11KeyType.EC:
            return encode_ec_public_key(public), True
        return encode_rsa_public_key(public), False

    der, is_ec = token.with_session(run)
    public_key = serialization.load_der_public_key(der)
    if is_ec:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        return HsmEcPrivateKey(token, label, public_key)
    assert isinstance(public_key, rsa.RSAPublicKey)
    return HsmRsaPrivateKey(token, label, public_key)


def _find(session: Any, label: str, *, private: bool) -> Any | None:
    from pkcs11 import ObjectClass
    from pkcs11.exceptions import NoSuchKey

    kind = ObjectClass.PRIVATE_KEY if private else ObjectClass.PUBLIC_KEY
    try:
        return session.get_key(object_class=kind, label=label)
    except NoSuchKey:
        return None


def _sign_in_token(token: Pkcs11Token, label: str, data: bytes, mechanism: str) -> bytes:
    from pkcs11 import Mechanism

    def run(session: Any) -> bytes:
        key = _find(session, label, private=True)
        if key is None:
            raise KeyWrapError(
                f"The CA key {resident_key_uri(token.token_label, label)} is no longer on the "
                "token; restore it into the HSM."
            )
        return bytes(key.sign(data, mechanism=getattr(Mechanism, mechanism)))

    return token.with_session(run)


def _digest(data: bytes, algorithm: Any) -> tuple[bytes, hashes.HashAlgorithm]:
    if isinstance(algorithm, utils.Prehashed):
        return data, algorithm._algorithm
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


def _no_export(*_: object, **__: object) -> NoReturn:
    raise ValidationError("This CA key lives in an HSM and cannot be exported.")


class _InToken:
    """What both key kinds share: where the key is, and that it never comes out."""

    token: Pkcs11Token
    label: str

    @property
    def uri(self) -> str:
        return resident_key_uri(self.token.token_label, self.label)

    private_numbers = _no_export
    private_bytes = _no_export

    def __copy__(self) -> Any:  # immutable: a copy is the same key
        return self

    def __deepcopy__(self, memo: object) -> Any:
        return self


class HsmEcPrivateKey(_InToken, ec.EllipticCurvePrivateKey):
    """An EC key in a PKCS#11 token; ``sign`` is CKM_ECDSA over a locally computed digest."""

    def __init__(self, token: Pkcs11Token, label: str, public: ec.EllipticCurvePublicKey) -> None:
        self.token, self.label, self._public = token, label, public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise ValidationError("An HSM EC key signs with ECDSA only.")
        digest, _ = _digest(bytes(data), signature_algorithm.algorithm)
        raw = _sign_in_token(self.token, self.label, digest, "ECDSA")
        half = len(raw) // 2
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise ValidationError("An HSM CA key only signs.")


class HsmRsaPrivateKey(_InToken, rsa.RSAPrivateKey):
    """An RSA key in a PKCS#11 token; ``sign`` is CKM_RSA_PKCS over a DigestInfo."""

    def __init__(self, token: Pkcs11Token, label: str, public: rsa.RSAPublicKey) -> None:
        self.token, self.label, self._public = token, label, public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        padding: padding.AsymmetricPadding,
        algorithm: Any,
    ) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

        if not isinstance(padding, PKCS1v15):
            raise ValidationError("An HSM RSA CA key signs with PKCS#1 v1.5 only.")
        digest, hash_algorithm = _digest(bytes(data), algorithm)
        prefix = _DIGEST_INFO.get(hash_algorithm.name)
        if prefix is None:
            raise ValidationError(f"An HSM RSA CA key does not sign {hash_algorithm.name}.")
        return _sign_in_token(self.token, self.label, prefix + digest, "RSA_PKCS")

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise ValidationError("An HSM CA key only signs.")


HsmPrivateKey = HsmEcPrivateKey | HsmRsaPrivateKey
