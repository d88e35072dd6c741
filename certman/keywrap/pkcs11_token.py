"""One PKCS#11 token, opened once per process: the only module that touches python-pkcs11.

Every call goes through one process-wide lock: SoftHSM2 (and several vendor libraries)
crash when two threads call into the module at once, and one logged-in session per token
is all certman needs. PKCS#11 exceptions are translated here into certman errors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from certman.errors import CertmanError, ConfigError, KeyWrapError

T = TypeVar("T")

GCM_NONCE_SIZE = 12
GCM_TAG_BITS = 128

# python-pkcs11 allows one loaded library per process (C_Initialize is process-wide).
_LOCK = threading.RLock()
_LIBRARIES: dict[str, Any] = {}
_SESSIONS: dict[tuple[str, str], Any] = {}


class SealedForAnotherContext(Exception):
    """The HSM refused to decrypt: the AAD (context) or the bytes are not what it sealed."""


def object_uri(token_label: str, object_label: str, kind: str) -> str:
    """The RFC 7512 URI of an object in a token (``kind``: secret-key, private, ...)."""
    from urllib.parse import quote

    return (
        f"pkcs11:token={quote(token_label, safe='')};object={quote(object_label, safe='')};"
        f"type={kind}"
    )


@dataclass
class Pkcs11Token:
    """A token in a PKCS#11 module, addressed by label, logged in with a PIN from the env."""

    module: str
    token_label: str
    pin_env: str
    where: str = "[kms]"
    _keys: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, kms: Mapping[str, Any], where: str) -> Pkcs11Token:
        """The token [kms] names (module, token_label, pin_env); ``where`` is the config file."""
        return cls(
            module=str(kms.get("module") or ""),
            token_label=str(kms.get("token_label") or ""),
            pin_env=str(kms.get("pin_env") or ""),
            where=where,
        )

    def describe(self) -> str:
        return f"token {self.token_label!r} of {self.module}"

    # --- the two operations the key wrapper needs ------------------------------------

    def encrypt(self, key_label: str, data: bytes, aad: bytes) -> bytes:
        """AES-GCM inside the HSM; the result is nonce || ciphertext || tag."""
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        nonce = os.urandom(GCM_NONCE_SIZE)
        params = GCMParams(nonce, aad, GCM_TAG_BITS)
        sealed = self._with_key(
            key_label,
            lambda key: key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params),
        )
        return nonce + bytes(sealed)

    def decrypt(self, key_label: str, blob: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.mechanisms import GCMParams

        nonce, sealed = blob[:GCM_NONCE_SIZE], blob[GCM_NONCE_SIZE:]
        params = GCMParams(nonce, aad, GCM_TAG_BITS)

        def run(key: Any) -> bytes:
            try:
                return bytes(
                    key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                )
            except PKCS11Error as e:
                # A failed GCM tag comes back as CKR_ENCRYPTED_DATA_INVALID on some
                # modules and as CKR_GENERAL_ERROR on SoftHSM2.
                if _is_connection_error(e):
                    raise
                raise SealedForAnotherContext() from e

        return self._with_key(key_label, run)

    def create_aes_key(self, key_label: str) -> bool:
        """Create a non-extractable AES-256 key ``key_label``; False when it already exists."""
        from pkcs11 import Attribute, KeyType

        def run() -> bool:
            if self._find_key(key_label) is not None:
                return False
            self._session().generate_key(
                KeyType.AES,
                256,
                label=key_label,
                store=True,
                template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                },
            )
            return True

        return self._call(run)

    def has_key(self, key_label: str) -> bool:
        return self._call(lambda: self._find_key(key_label) is not None)

    def with_session(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)`` under the process-wide lock, errors translated."""
        return self._call(lambda: fn(self._session()))

    # --- plumbing ----------------------------------------------------------------------

    def _with_key(self, key_label: str, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            key = self._keys.get(key_label)
            if key is None:
                key = self._find_key(key_label)
                if key is None:
                    raise KeyWrapError(
                        f"There is no AES key labelled {key_label!r} on {self.describe()}; "
                        "create it with `certman init` (or your HSM's tools), or fix "
                        "[kms] key_label."
                    )
                self._keys[key_label] = key
            return fn(key)

        return self._call(run)

    def _find_key(self, key_label: str) -> Any | None:
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey

        try:
            return self._session().get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=key_label
            )
        except NoSuchKey:
            return None
        except MultipleObjectsReturned:
            raise KeyWrapError(
                f"{self.describe()} holds several AES keys labelled {key_label!r}; "
                "keep one, or point [kms] key_label at a unique label."
            ) from None

    def _call(self, fn: Callable[[], T]) -> T:
        from pkcs11.exceptions import PKCS11Error

        with _LOCK:
            try:
                return fn()
            except (CertmanError, SealedForAnotherContext):
                raise
            except PKCS11Error as e:
                if _is_connection_error(e):
                    self._forget()
                    raise KeyWrapError(
                        f"The HSM ({self.describe()}) went away ({type(e).__name__}); "
                        "certman will reconnect and retry later.",
                        retryable=True,
                    ) from None
                raise KeyWrapError(
                    f"The HSM ({self.describe()}) refused the operation ({type(e).__name__})."
                ) from None

    def _session(self) -> Any:
        cache_key = (self.module, self.token_label)
        session = _SESSIONS.get(cache_key)
        if session is None:
            session = _open_session(self)
            _SESSIONS[cache_key] = session
        return session

    def _forget(self) -> None:
        _SESSIONS.pop((self.module, self.token_label), None)
        self._keys.clear()


@contextmanager
def hsm_lock() -> Iterator[None]:
    """The process-wide PKCS#11 lock, for other code that calls the module (CA signers)."""
    with _LOCK:
        yield


def _open_session(token: Pkcs11Token) -> Any:
    import pkcs11
    from pkcs11.exceptions import NoSuchToken, PinIncorrect, PinLenRange, UserAlreadyLoggedIn

    pin = os.environ.get(token.pin_env, "")
    if not pin:
        raise ConfigError(
            f"The HSM PIN is read from the environment variable {token.pin_env!r} "
            f"([kms] pin_env in {token.where}), which is not set; export it before running certman."
        )
    lib = _library(token)
    try:
        slot_token = lib.get_token(token_label=token.token_label)
    except NoSuchToken:
        raise ConfigError(
            f"No PKCS#11 token labelled {token.token_label!r} in {token.module}; "
            "initialise it (softhsm2-util --init-token ...) or fix [kms] token_label in "
            f"{token.where}."
        ) from None
    try:
        return slot_token.open(user_pin=pin, rw=True)
    except (PinIncorrect, PinLenRange):
        raise KeyWrapError(
            f"The HSM rejected the PIN for token {token.token_label!r}; check the value of "
            f"${token.pin_env}."
        ) from None
    except UserAlreadyLoggedIn:
        # Another session of this process logged the user in already (the login is
        # per application, not per session): the new session shares it.
        return slot_token.open(rw=True)
    except pkcs11.exceptions.PKCS11Error as e:
        raise KeyWrapError(
            f"Could not log in to {token.describe()} ({type(e).__name__})."
        ) from None


def _library(token: Pkcs11Token) -> Any:
    import pkcs11
    from pkcs11.exceptions import PKCS11Error

    lib = _LIBRARIES.get(token.module)
    if lib is not None:
        return lib
    if not token.module:
        raise ConfigError(
            f'[kms] type is "pkcs11" but module is empty in {token.where}; set it to the '
            "PKCS#11 library of your HSM (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so; "
            "CloudHSM: /opt/cloudhsm/lib/libcloudhsm_pkcs11.so)."
        )
    if not Path(token.module).is_file():
        raise ConfigError(
            f"The PKCS#11 library {token.module} ([kms] module in {token.where}) does not "
            "exist; install your HSM's client or fix the path."
        )
    if _LIBRARIES:
        other = next(iter(_LIBRARIES))
        raise ConfigError(
            f"This process already uses the PKCS#11 library {other}; one process can load "
            f"only one, so {token.module} cannot be used next to it."
        )
    try:
        lib = pkcs11.lib(token.module)
    except (PKCS11Error, RuntimeError, OSError) as e:
        raise ConfigError(
            f"The PKCS#11 library {token.module} could not be loaded ({e}); check [kms] module "
            f"in {token.where}."
        ) from None
    _LIBRARIES[token.module] = lib
    return lib


def _is_connection_error(error: Exception) -> bool:
    from pkcs11.exceptions import (
        DeviceError,
        DeviceMemory,
        DeviceRemoved,
        SessionClosed,
        SessionHandleInvalid,
        TokenNotPresent,
    )

    return isinstance(
        error,
        DeviceError
        | DeviceMemory
        | DeviceRemoved
        | SessionClosed
        | SessionHandleInvalid
        | TokenNotPresent,
    )
