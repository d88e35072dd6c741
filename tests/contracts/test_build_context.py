"""Backends are built from their settings and the narrow build context, never the runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certman.archive.factory import build_local as build_local_archive
from certman.clock import FrozenClock
from certman.config import load_config
from certman.contracts.account_store import AccountStore
from certman.contracts.build_context import AwsClientFactory, BuildContext
from certman.contracts.issuer import Issuer
from certman.contracts.key_wrapper import KeyWrapper
from certman.deploy.files import build_deployer as build_file_deployer
from certman.errors import ConfigError
from certman.keywrap.factory import build_local as build_local_wrapper
from certman.models import EncryptionContext
from certman.service.runtime import Runtime

CONTEXT = EncryptionContext(certificate="web", revision=1, purpose="private-key")
SEEN: list[object] = []


def _never_aws() -> AwsClientFactory:
    raise AssertionError("no local backend asks for AWS clients")


def _never_wrapper() -> KeyWrapper:
    raise AssertionError("this backend does not need the key wrapper")


def _never_accounts(issuer: str, directory: str) -> AccountStore:
    raise AssertionError("only the ACME issuer asks for an account store")


def _never_ca(name: str) -> Issuer:
    raise AssertionError("only the private-CA issuer asks for a CA")


def context_for(home: Path) -> BuildContext:
    """A context made by hand: whatever a factory needs beyond it would fail here."""
    return BuildContext(
        config_path=home / "certman.toml",
        home=home,
        clock=FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)),
        master_key_path=home / "master.key",
        archive_path=home / "archive",
        key_wrapper_type="local",
        aws=_never_aws,
        key_wrapper=_never_wrapper,
        acme_accounts=_never_accounts,
        private_ca=_never_ca,
    )


def test_local_backends_build_from_the_context_alone(initialised_home: Path) -> None:
    context = context_for(initialised_home)
    wrapper = build_local_wrapper(context, {"type": "local"})
    assert wrapper.unwrap(wrapper.wrap(b"k" * 32, CONTEXT), CONTEXT) == b"k" * 32
    store = build_local_archive(context, {"type": "local"})
    assert store.root == initialised_home / "archive"  # type: ignore[attr-defined]
    target = initialised_home / "www"
    target.mkdir()
    deployer = build_file_deployer(
        context,
        {
            "type": "file",
            "name": "www",
            "fullchain_path": str(target / "c.pem"),
            "key_path": str(target / "k.pem"),
        },
    )
    assert deployer.settings.name == "www"


def test_the_acme_issuer_keeps_its_account_in_the_store_the_context_gives(
    initialised_home: Path,
) -> None:
    from certman.acme_client.factory import build_issuer

    asked: list[tuple[str, str]] = []

    def accounts(issuer: str, directory: str) -> AccountStore:
        asked.append((issuer, directory))
        return object()  # type: ignore[return-value]

    context = replace(context_for(initialised_home), acme_accounts=accounts)
    issuer = build_issuer(
        context, {"type": "acme", "name": "le", "directory": "https://acme.invalid/dir"}
    )
    assert asked == [("le", "https://acme.invalid/dir")]
    assert not hasattr(issuer, "runtime")


def build_recording(context: Any, settings: Mapping[str, Any]) -> Issuer:
    SEEN.append(context)
    return context.private_ca("default")  # type: ignore[no-any-return]


def test_the_runtime_passes_factories_the_build_context_not_itself(
    initialised_home: Path,
) -> None:
    config_path = initialised_home / "certman.toml"
    with config_path.open("a") as f:
        f.write('\n[issuers.recorded]\ntype = "recording"\n')
    rt = Runtime(config=load_config(initialised_home, config_path))
    rt.registry.issuers["recording"] = "tests.contracts.test_build_context:build_recording"
    SEEN.clear()
    try:
        issuer = rt.issuer("recorded")
        (context,) = SEEN
        assert isinstance(context, BuildContext)
        assert context.config_path == config_path
        assert context.home == initialised_home
        assert context.clock is rt.clock
        assert context.key_wrapper() is rt.key_wrapper
        assert issuer.name == "default"  # the private CA the context loaded
    finally:
        rt.engine.dispose()


def test_a_bad_kms_cache_max_age_is_refused_naming_the_key_and_file(
    initialised_home: Path,
) -> None:
    from certman.aws.kms import _cache_max_age

    context = context_for(initialised_home)
    assert _cache_max_age({"cache_max_age": ""}, context) is None
    with pytest.raises(ConfigError) as caught:
        _cache_max_age({"cache_max_age": "soon"}, context)
    assert "kms.cache_max_age" in str(caught.value)
    assert str(context.config_path) in str(caught.value)
