"""The aws-kms key wrapper against moto: context binding and the bounded data-key cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from certman.aws.clients import AwsClients
from certman.aws.kms import DataKeyCache, KmsKeyWrapper
from certman.config import load_config
from certman.errors import ConfigError, KeyWrapError
from certman.models import EncryptionContext
from certman.service.runtime import Runtime
from tests.aws.conftest import REGION, Aws, aws_config, write_config

CTX = EncryptionContext(certificate="web", revision=1, purpose="private-key")
OTHER = EncryptionContext(certificate="web", revision=1, purpose="archive")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wrapper(aws: Aws, cache: DataKeyCache | None = None) -> KmsKeyWrapper:
    aws.kms_key()
    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)
    return KmsKeyWrapper(kms=clients.client("kms"), key_id="alias/certman", cache=cache)


def count(target: KmsKeyWrapper, operation: str) -> list[str]:
    calls: list[str] = []
    target.kms.meta.events.register(
        f"before-call.kms.{operation}", lambda **_: calls.append(operation)
    )
    return calls


def test_a_wrong_context_fails_at_kms_and_at_gcm(aws: Aws) -> None:
    target = wrapper(aws)
    sealed = target.wrap(b"secret", CTX)
    with pytest.raises(KeyWrapError, match="another certificate, revision or purpose"):
        target.unwrap(sealed, OTHER)
    # even with the right data key, the AAD binds the ciphertext to its context
    data_key = target.kms.decrypt(
        CiphertextBlob=sealed.encrypted_data_key, EncryptionContext=CTX.as_dict()
    )["Plaintext"]
    from certman.keywrap.envelope import open_sealed

    with pytest.raises(KeyWrapError, match="another certificate, revision or purpose"):
        open_sealed(sealed, OTHER, data_key)


def test_an_altered_record_is_refused(aws: Aws) -> None:
    target = wrapper(aws)
    sealed = target.wrap(b"secret", CTX)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(KeyWrapError, match="altered"):
        target.unwrap(replace(sealed, ciphertext=flipped), CTX)


def test_the_cache_is_off_by_default(aws: Aws) -> None:
    target = wrapper(aws)
    generated, decrypted = count(target, "GenerateDataKey"), count(target, "Decrypt")
    sealed = [target.wrap(b"x", CTX) for _ in range(3)]
    for each in sealed:
        target.unwrap(each, CTX)
    assert len(generated) == 3 and len(decrypted) == 3
    assert len({s.encrypted_data_key for s in sealed}) == 3, "a fresh data key per object"


def test_unsealing_reuses_a_data_key_within_its_bounds(aws: Aws) -> None:
    clock = Clock()
    target = wrapper(aws, DataKeyCache(max_age=60, max_uses=3, clock=clock))
    sealed = target.wrap(b"x", CTX)
    decrypted = count(target, "Decrypt")
    for _ in range(5):
        assert target.unwrap(sealed, CTX) == b"x"
    assert len(decrypted) == 2, "3 uses per cached data key"
    clock.now += 61
    target.unwrap(sealed, CTX)
    assert len(decrypted) == 3, "an entry older than max_age is not used"


def test_a_cached_data_key_is_never_used_for_another_context(aws: Aws) -> None:
    target = wrapper(aws, DataKeyCache(max_age=60, max_uses=100))
    sealed = target.wrap(b"x", CTX)
    target.unwrap(sealed, CTX)  # cached for CTX
    with pytest.raises(KeyWrapError, match="another certificate, revision or purpose"):
        target.unwrap(sealed, OTHER)
    generated = count(target, "GenerateDataKey")
    target.wrap(b"y", OTHER)
    assert generated == ["GenerateDataKey"], "sealing under another context asks KMS"


def test_the_cache_holds_a_bounded_number_of_entries(aws: Aws) -> None:
    cache = DataKeyCache(max_age=60, max_uses=100, max_entries=2)
    target = wrapper(aws, cache)
    for revision in range(5):
        target.wrap(b"x", EncryptionContext(certificate="w", revision=revision, purpose="p"))
    assert cache.size() == 2


def test_every_object_still_gets_its_own_nonce_with_a_cached_data_key(aws: Aws) -> None:
    target = wrapper(aws, DataKeyCache(max_age=60, max_uses=10))
    one, two = target.wrap(b"same", CTX), target.wrap(b"same", CTX)
    assert one.encrypted_data_key == two.encrypted_data_key
    assert one.nonce != two.nonce and one.ciphertext != two.ciphertext


def runtime_with(home: Path, aws: Aws, kms: str) -> Runtime:
    write_config(home, aws_config(aws, kms=False, sse=None, acm=False) + kms)
    return Runtime(config=load_config(home, home / "certman.toml"), check_schema=False)


def test_caching_needs_both_bounds(home: Path, aws: Aws) -> None:
    rt = runtime_with(
        home, aws, '[kms]\ntype = "aws-kms"\nkey_id = "alias/certman"\ncache_max_age = "5m"\n'
    )
    with pytest.raises(ConfigError, match="cache_max_age and cache_max_uses"):
        rt.build_key_wrapper("aws-kms")


def test_caching_is_configured_from_kms_settings(home: Path, aws: Aws) -> None:
    rt = runtime_with(
        home,
        aws,
        '[kms]\ntype = "aws-kms"\nkey_id = "alias/certman"\n'
        'cache_max_age = "5m"\ncache_max_uses = 10\n',
    )
    built: Any = rt.build_key_wrapper("aws-kms")
    assert built.cache is not None
    assert (built.cache.max_age, built.cache.max_uses) == (300, 10)


def test_a_reader_needs_no_key_id_but_sealing_does(home: Path, aws: Aws) -> None:
    aws.kms_key()
    sealed = wrapper_for_sealing(aws).wrap(b"x", CTX)
    rt = runtime_with(home, aws, "")  # [kms] type local, no key_id
    reader: Any = rt.build_key_wrapper("aws-kms")
    assert reader.unwrap(sealed, CTX) == b"x"
    with pytest.raises(ConfigError, match=r"set \[kms\] key_id"):
        reader.wrap(b"x", CTX)


def wrapper_for_sealing(aws: Aws) -> KmsKeyWrapper:
    clients = AwsClients(region=REGION, endpoint_url=aws.endpoint_url, max_attempts=1)
    return KmsKeyWrapper(kms=clients.client("kms"), key_id="alias/certman")
