"""The `aws-kms` key wrapper: a KMS data key per sealed object, AES-256-GCM locally."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from certman.aws.errors import Hints, aws_call
from certman.contracts.issuer import PreflightResult
from certman.durations import parse_duration
from certman.errors import ConfigError, KeyWrapError, ValidationError
from certman.keywrap.envelope import check_format, open_sealed, seal
from certman.models import EncryptionContext, WrappedKey

if TYPE_CHECKING:
    from datetime import datetime

    from certman.contracts.build_context import BuildContext

WRAPPER_TYPE = "aws-kms"
_MISSING = Hints(
    missing="set [kms] key_id to an existing key id, ARN or alias (e.g. alias/certman)"
)
# Decrypt names the key the record was sealed under: when that is gone, it is gone for good.
_GONE = Hints(
    missing="the KMS key that sealed it was deleted, so it cannot be opened any more; restore "
    "the secret from a backup sealed under another key",
    missing_is_final=True,
)


@dataclass
class DataKeyCache:
    """Bounded reuse of data keys, as the AWS Encryption SDK's caching CMM does.

    Off unless both bounds are set. Entries are partitioned by encryption context: a data
    key made for one certificate/revision/purpose is never used for another, and every
    object sealed with it still has that context as its AES-GCM AAD (and a fresh nonce).
    Sealing reuses a data key GenerateDataKey returned; unsealing reuses a data key Decrypt
    returned, keyed by its encrypted blob and the context. Entries are dropped after
    ``max_age`` seconds or ``max_uses`` uses, whichever comes first, and the least recently
    used go when there are more than ``max_entries``. Plaintext data keys live only here,
    in memory.
    """

    max_age: float
    max_uses: int
    max_entries: int = 1000
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[tuple[str, bytes, bytes], _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, partition: bytes) -> tuple[bytes, bytes, str] | None:
        """A data key to seal with under this context (plaintext, blob, KMS key ARN)."""
        entry = self._take(("seal", b"", partition))
        return (entry.data_key, entry.blob, entry.key_arn) if entry else None

    def put(self, partition: bytes, data_key: bytes, blob: bytes, key_id: str) -> None:
        self._put(("seal", b"", partition), _Entry(self.clock(), 1, data_key, blob, key_id))

    def take_opened(self, blob: bytes, partition: bytes) -> bytes | None:
        """The plaintext of ``blob`` as Decrypt returned it for this context, if cached."""
        entry = self._take(("open", blob, partition))
        return entry.data_key if entry else None

    def put_opened(self, blob: bytes, partition: bytes, data_key: bytes) -> None:
        self._put(("open", blob, partition), _Entry(self.clock(), 1, data_key, blob, ""))

    def size(self) -> int:
        return len(self._entries)

    def _take(self, key: tuple[str, bytes, bytes]) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.clock() - entry.created > self.max_age or entry.uses >= self.max_uses:
                del self._entries[key]
                return None
            entry.uses += 1
            self._entries.move_to_end(key)
            return entry

    def _put(self, key: tuple[str, bytes, bytes], entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


@dataclass
class _Entry:
    created: float
    uses: int
    data_key: bytes = field(repr=False)
    blob: bytes
    key_arn: str


@dataclass
class KmsKeyWrapper:
    """KeyWrapper + SupportsRewrap on AWS KMS (GenerateDataKey / Decrypt).

    The EncryptionContext (certificate, revision, purpose) goes to KMS, which binds it to
    the data key, and is also the AES-GCM AAD of the sealed bytes: a wrong context fails
    at KMS and at GCM. Plaintext data keys live only in memory.
    """

    kms: Any
    key_id: str
    cache: DataKeyCache | None = None
    wrapper_type: str = WRAPPER_TYPE
    _key_arn: str | None = None

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> WrappedKey:
        if not self.key_id:
            raise ConfigError(
                "Sealing with aws-kms needs a KMS key: set [kms] key_id (e.g. alias/certman)."
            )
        partition = context.aad()
        cached = self.cache.take(partition) if self.cache is not None else None
        if cached is not None:
            data_key, blob, key_arn = cached
        else:
            with aws_call("kms:GenerateDataKey", self.key_id, KeyWrapError, _MISSING):
                answer = self.kms.generate_data_key(
                    KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=context.as_dict()
                )
            data_key, blob, key_arn = answer["Plaintext"], answer["CiphertextBlob"], answer["KeyId"]
            self._key_arn = key_arn
            if self.cache is not None:
                self.cache.put(partition, data_key, blob, key_arn)
        return seal(
            plaintext,
            context,
            data_key=data_key,
            encrypted_data_key=blob,
            wrapper=WRAPPER_TYPE,
            key_id=key_arn,
        )

    def unwrap(self, wrapped: WrappedKey, context: EncryptionContext) -> bytes:
        if wrapped.wrapper != WRAPPER_TYPE:
            raise KeyWrapError(
                f"A key sealed by {wrapped.wrapper!r} was handed to the aws-kms wrapper; "
                "run `certman keys rotate --to aws-kms` to move every key to KMS."
            )
        check_format(wrapped, context)
        blob, partition = wrapped.encrypted_data_key, context.aad()
        data_key = self.cache.take_opened(blob, partition) if self.cache is not None else None
        if data_key is None:
            with aws_call("kms:Decrypt", wrapped.key_id, KeyWrapError, _GONE):
                answer = self.kms.decrypt(
                    CiphertextBlob=blob, KeyId=wrapped.key_id, EncryptionContext=context.as_dict()
                )
            data_key = answer["Plaintext"]
            if self.cache is not None:
                self.cache.put_opened(blob, partition, data_key)
        return open_sealed(wrapped, context, data_key)

    def key_arn(self) -> str:
        if self._key_arn is None:
            with aws_call("kms:DescribeKey", self.key_id, KeyWrapError, _MISSING):
                self._key_arn = self.kms.describe_key(KeyId=self.key_id)["KeyMetadata"]["Arn"]
        return self._key_arn

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        return wrapped.wrapper != WRAPPER_TYPE or wrapped.key_id != self.key_arn()

    def preflight(self, now: datetime) -> PreflightResult:
        """Is the KMS key there and enabled? (moto still encrypts with a disabled key.)"""
        try:
            with aws_call("kms:DescribeKey", self.key_id, KeyWrapError, _MISSING):
                meta = self.kms.describe_key(KeyId=self.key_id)["KeyMetadata"]
        except KeyWrapError as e:
            return PreflightResult(ok=False, checks=(("kms key", False, e.message),))
        enabled = bool(meta.get("Enabled")) and meta.get("KeyState") == "Enabled"
        message = (
            f"KMS key {meta['Arn']} is enabled."
            if enabled
            else f"KMS key {meta['Arn']} is {meta.get('KeyState')}; enable it or change "
            "[kms] key_id."
        )
        return PreflightResult(ok=enabled, checks=(("kms key", enabled, message),))


def build_key_wrapper(context: BuildContext, settings: Mapping[str, Any]) -> KmsKeyWrapper:
    where = f"[kms] of {context.config_path}"
    key_id = str(settings.get("key_id") or "")
    # With another [kms] type this wrapper only opens what KMS sealed before a move
    # (`certman keys rotate --to local`): each record names its KMS key, key_id may be empty.
    if not key_id and context.key_wrapper_type == WRAPPER_TYPE:
        raise ConfigError(
            f'[kms] type is "aws-kms" but key_id is empty in {where}; set it to '
            "a KMS key id, ARN or alias (e.g. alias/certman)."
        )
    cache = None
    max_age = _cache_max_age(settings, context)
    max_uses = int(settings.get("cache_max_uses") or 0)
    if max_age is not None and max_uses > 0:
        cache = DataKeyCache(max_age=max_age.total_seconds(), max_uses=max_uses)
    elif (max_age is None) != (max_uses <= 0):
        raise ConfigError(
            f"Set both cache_max_age and cache_max_uses in {where} to cache data keys, or neither."
        )
    return KmsKeyWrapper(kms=context.aws().client("kms"), key_id=key_id, cache=cache)


def _cache_max_age(settings: Mapping[str, Any], context: BuildContext) -> timedelta | None:
    """[kms] cache_max_age; an empty string means "not set"."""
    raw = settings.get("cache_max_age")
    if raw in ("", None):
        return None
    try:
        return parse_duration(raw, field="kms.cache_max_age")
    except ValidationError as e:
        raise ConfigError(f"{e} (in {context.config_path})") from None
