"""Values that cross module boundaries: key types, states, sealed keys, contexts."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from certman.errors import IntegrityError, ValidationError

# Sorted keys, no spaces: what json.dumps(..., sort_keys=True, separators=(",", ":")) writes,
# without building an encoder per call (the bulk path encodes several values per certificate).
CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
# How json.dumps writes a str (ensure_ascii), quotes included.
json_string = json.encoder.encode_basestring_ascii


def canonical_text_map(values: Mapping[str, str]) -> str:
    """CANONICAL_JSON of a mapping of text to text, spelled out (falls back to the encoder
    for any other value)."""
    items = sorted(values.items())
    for key, value in items:
        if type(key) is not str or type(value) is not str:
            return CANONICAL_JSON.encode(values)
    text = json_string
    return "{" + ",".join([text(key) + ":" + text(value) for key, value in items]) + "}"


def _b64(data: bytes) -> str:
    """Standard base64 without a newline: what base64.b64encode(data).decode() returns."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class KeyType(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @classmethod
    def parse(cls, text: str, *, field: str = "key type") -> KeyType:
        if isinstance(text, KeyType):
            return text
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise ValidationError(f"Unknown {field} {text!r}; use one of: {known}.") from None


class RevocationReason(StrEnum):
    """RFC 5280 section 5.3.1 reason codes that an operator may pick."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        for reason in cls:
            if reason.value.lower() == str(text).strip().lower():
                return reason
        known = ", ".join(r.value for r in cls)
        raise ValidationError(f"Unknown revocation reason {text!r}; use one of: {known}.")

    @property
    def code(self) -> int:
        return _REASON_CODES[self]


_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
}


@dataclass(frozen=True, kw_only=True)
class CertificateFacts:
    """What the inventory records of an issued certificate (certman.pki reads them)."""

    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    public_key_der: bytes


@dataclass(frozen=True, kw_only=True)
class EncryptionContext:
    """What a sealed object is bound to: AES-GCM AAD and KMS EncryptionContext.

    Unsealing with any other context fails, so a sealed key copied onto another
    certificate or revision is useless.
    """

    certificate: str
    revision: int
    purpose: str

    def as_dict(self) -> dict[str, str]:
        return {
            "certificate": self.certificate,
            "revision": str(self.revision),
            "purpose": self.purpose,
        }

    def aad(self) -> bytes:
        """The canonical JSON of ``as_dict`` (sorted keys, no spaces), bound as AAD."""
        # Once per context: sealing binds it twice (the data key and the payload). Kept in
        # the instance's dict by hand: functools.cached_property takes a lock per instance.
        cached: bytes | None = self.__dict__.get("_aad")
        if cached is None:
            # The keys in sorted order around json's own string encoder: CANONICAL_JSON's
            # bytes exactly.
            text = json_string
            cached = self.__dict__["_aad"] = (
                f'{{"certificate":{text(self.certificate)},"purpose":{text(self.purpose)},'
                f'"revision":{text(str(self.revision))}}}'
            ).encode()
        return cached


@dataclass(frozen=True, kw_only=True)
class WrappedKey:
    """An envelope-encrypted secret.

    ``encrypted_data_key`` is the per-object data key as the wrapper sealed it;
    ``nonce`` + ``ciphertext`` are the secret under that data key (AES-256-GCM,
    the context as AAD). ``key_id`` names the wrapping key (master key version,
    KMS key ARN, PKCS#11 URI).
    """

    wrapper: str
    key_id: str
    algorithm: str
    encrypted_data_key: bytes
    nonce: bytes
    ciphertext: bytes
    version: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, ciphertext: bool = True) -> dict[str, Any]:
        """JSON-ready form: bytes as base64. ``ciphertext=False`` leaves "ct" empty (for a
        header that describes a ciphertext stored next to it)."""
        doc: dict[str, Any] = {
            "v": self.version,
            "wrapper": self.wrapper,
            "key_id": self.key_id,
            "alg": self.algorithm,
            "edk": base64.b64encode(self.encrypted_data_key).decode(),
            "nonce": base64.b64encode(self.nonce).decode(),
            "ct": base64.b64encode(self.ciphertext).decode() if ciphertext else "",
        }
        if self.extra:
            doc["extra"] = self.extra
        return doc

    def to_json(self, *, ciphertext: bool = True) -> str:
        """``to_dict`` as CANONICAL_JSON writes it, byte for byte (the bulk path writes two of
        these per certificate: spelled out, without building the dict)."""
        # Kept in the instance's dict (see EncryptionContext.aad): the inventory and the
        # archive bundle both write the sealed key of a certificate.
        slot = "_json" if ciphertext else "_json_without_ciphertext"
        cached: str | None = self.__dict__.get(slot)
        if cached is None:
            cached = self.__dict__[slot] = self._canonical(
                _b64(self.ciphertext) if ciphertext else ""
            )
        return cached

    def _canonical(self, ct: str) -> str:
        text = json_string
        extra = f'"extra":{canonical_text_map(self.extra)},' if self.extra else ""
        return (
            f'{{"alg":{text(self.algorithm)},"ct":"{ct}",'
            f'"edk":"{_b64(self.encrypted_data_key)}",{extra}"key_id":{text(self.key_id)},'
            f'"nonce":"{_b64(self.nonce)}","v":{int(self.version)},'
            f'"wrapper":{text(self.wrapper)}}}'
        )

    @classmethod
    def from_json(cls, text: str) -> WrappedKey:
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as e:
            raise IntegrityError("A sealed key record is malformed; it cannot be unsealed.") from e

    @classmethod
    def from_dict(cls, doc: Any) -> WrappedKey:
        try:
            return cls(
                version=int(doc["v"]),
                wrapper=doc["wrapper"],
                key_id=doc["key_id"],
                algorithm=doc["alg"],
                encrypted_data_key=base64.b64decode(doc["edk"]),
                nonce=base64.b64decode(doc["nonce"]),
                ciphertext=base64.b64decode(doc["ct"]),
                extra=dict(doc.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise IntegrityError("A sealed key record is malformed; it cannot be unsealed.") from e
