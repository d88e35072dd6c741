"""The `pkcs11` key wrapper: each data key sealed inside an HSM by a non-extractable AES key.

The envelope is the one every wrapper shares (certman.keywrap.envelope): a fresh 256-bit
data key per object, the secret under AES-256-GCM with the context as AAD. The data key
itself is encrypted by the HSM with CKM_AES_GCM under the token's AES key, with the same
context as the HSM-side AAD, so the binding holds at both layers (as KMS binds its
EncryptionContext). The wrapping key never leaves the HSM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certman.contracts.issuer import PreflightResult
from certman.errors import KeyWrapError
from certman.keywrap.envelope import (
    check_format,
    new_data_key,
    not_for_this_context,
    open_sealed,
    seal,
)
from certman.keywrap.pkcs11_token import Pkcs11Token, SealedForAnotherContext, object_uri
from certman.models import EncryptionContext, WrappedKey

if TYPE_CHECKING:
    from datetime import datetime

    from certman.contracts.build_context import BuildContext

WRAPPER_TYPE = "pkcs11"
_PROBE = EncryptionContext(certificate="certman-preflight", revision=0, purpose="probe")


def key_uri(token_label: str, key_label: str) -> str:
    """The RFC 7512 PKCS#11 URI of the wrapping key, recorded in every sealed record."""
    return object_uri(token_label, key_label, "secret-key")


def parse_key_uri(uri: str) -> tuple[str, str]:
    """(token label, key label) of a URI made by ``key_uri``."""
    from urllib.parse import unquote

    if not uri.startswith("pkcs11:"):
        raise KeyWrapError(f"{uri!r} is not a PKCS#11 URI; the sealed record was altered.")
    attributes = dict(
        part.split("=", 1) for part in uri.removeprefix("pkcs11:").split(";") if "=" in part
    )
    if "token" not in attributes or "object" not in attributes:
        raise KeyWrapError(f"The PKCS#11 URI {uri!r} names no token or object.")
    return unquote(attributes["token"]), unquote(attributes["object"])


@dataclass
class Pkcs11KeyWrapper:
    """KeyWrapper + SupportsRewrap on a PKCS#11 token (SoftHSM2, CloudHSM, ...)."""

    token: Pkcs11Token
    key_label: str
    wrapper_type: str = WRAPPER_TYPE

    @property
    def key_id(self) -> str:
        return key_uri(self.token.token_label, self.key_label)

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey:
        data_key = new_data_key()
        encrypted = self.token.encrypt(self.key_label, data_key, context.aad())
        return seal(
            plaintext,
            context,
            data_key=data_key,
            encrypted_data_key=encrypted,
            wrapper=WRAPPER_TYPE,
            key_id=self.key_id,
        )

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        if wrapped.wrapper != WRAPPER_TYPE:
            raise KeyWrapError(
                f"A key sealed by {wrapped.wrapper!r} was handed to the pkcs11 wrapper; "
                "run `certman keys rotate --to pkcs11` to move every key to the HSM."
            )
        check_format(wrapped, context)
        token_label, key_label = parse_key_uri(wrapped.key_id)
        if token_label != self.token.token_label:
            raise KeyWrapError(
                f"This key was sealed on the PKCS#11 token {token_label!r}, but [kms] "
                f"token_label is {self.token.token_label!r}; point it at that token."
            )
        try:
            data_key = self.token.decrypt(key_label, wrapped.encrypted_data_key, context.aad())
        except SealedForAnotherContext:
            raise not_for_this_context(context) from None
        return open_sealed(wrapped, context, data_key)

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        return wrapped.wrapper != WRAPPER_TYPE or wrapped.key_id != self.key_id

    def ensure_key(self) -> bool:
        """Create the wrapping key when the token has none (`certman init`); True if created."""
        return self.token.create_aes_key(self.key_label)

    def preflight(self, now: datetime) -> PreflightResult:
        """Can the HSM still seal and unseal? A round trip of a random value."""
        try:
            probe = new_data_key()
            ok = self.unwrap(self.wrap(probe, _PROBE), _PROBE) == probe
            message = f"HSM key {self.key_id} seals and unseals."
        except KeyWrapError as e:
            ok, message = False, e.message
        except Exception as e:  # a ConfigError (PIN variable unset, no token) is a failed check
            ok, message = False, str(e)
        return PreflightResult(ok=ok, checks=(("hsm key", ok, message),))


def build_key_wrapper(context: BuildContext, settings: Mapping[str, Any]) -> Pkcs11KeyWrapper:
    token = Pkcs11Token.from_settings(settings, str(context.config_path))
    return Pkcs11KeyWrapper(token=token, key_label=str(settings.get("key_label") or ""))
