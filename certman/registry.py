"""The backend registry: builds key wrappers, archive stores, issuers and deployers by type."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certman.errors import ConfigError


def _default_key_wrappers() -> dict[str, str]:
    return {
        "local": "certman.keywrap.factory:build_local",
        "aws-kms": "certman.aws.kms:build_key_wrapper",
        "pkcs11": "certman.keywrap.pkcs11:build_key_wrapper",
    }


def _default_archive_stores() -> dict[str, str]:
    return {
        "local": "certman.archive.factory:build_local",
        "s3": "certman.aws.s3:build_archive_store",
    }


def _default_issuers() -> dict[str, str]:
    return {
        "private-ca": "certman.service.authorities:build_issuer",
        "acme": "acme_client.factory:build_issuer",
    }


def _default_targets() -> dict[str, str]:
    return {
        "acm": "certman.aws.acm:build_deployer",
        "elbv2": "certman.deploy.elbv2:build_deployer",
        "file": "certman.deploy.files:build_deployer",
    }


@dataclass
class BackendRegistry:
    """Maps a configured ``type`` to the factory that builds it.

    Factories are named as "module:function" and imported only when used, so that
    `certman --help` never pays for boto3 or the acme library. A factory is called as
    ``factory(runtime, settings)`` where ``settings`` is the configuration table.
    """

    key_wrappers: dict[str, str] = field(default_factory=_default_key_wrappers)
    archive_stores: dict[str, str] = field(default_factory=_default_archive_stores)
    issuers: dict[str, str] = field(default_factory=_default_issuers)
    targets: dict[str, str] = field(default_factory=_default_targets)

    def factory(self, kind: str, type_name: str, where: str) -> Callable[..., Any]:
        table: Mapping[str, str] = getattr(self, kind)
        if type_name not in table:
            known = ", ".join(sorted(table))
            raise ConfigError(f"Unknown type {type_name!r} in {where}; known types: {known}.")
        module_name, _, attr = table[type_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            extra = {
                "aws-kms": "aws",
                "s3": "aws",
                "acm": "aws",
                "elbv2": "aws",
                "acme": "acme",
                "pkcs11": "hsm",
            }.get(type_name)
            hint = f" Install it with: pip install 'certman[{extra}]'." if extra else ""
            raise ConfigError(
                f"The {type_name!r} backend in {where} is not available "
                f"({e.name} is missing).{hint}"
            ) from None
        return getattr(module, attr)  # type: ignore[no-any-return]
