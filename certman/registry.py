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
        "acme": "certman.acme_client.factory:build_issuer",
    }


def _default_targets() -> dict[str, str]:
    return {
        "acm": "certman.aws.acm:build_deployer",
        "elbv2": "certman.deploy.elbv2:build_deployer",
        "file": "certman.deploy.files:build_deployer",
    }


# Where each backend declares the keys its table takes ("module:ATTR", a set or a mapping of
# key -> default), read when the configuration is loaded: an unknown key is refused then,
# not when the issuer or target is first used. The modules are light (no SDK imports).
def _default_issuer_settings() -> dict[str, str]:
    return {
        "private-ca": "certman.service.authority_settings:ISSUER_KEYS",
        "acme": "certman.acme_client.settings:DEFAULTS",
    }


def _default_target_settings() -> dict[str, str]:
    return {
        "acm": "certman.aws.acm:KNOWN_KEYS",
        "elbv2": "certman.deploy.elbv2:KNOWN_KEYS",
        "file": "certman.deploy.files:KNOWN_KEYS",
    }


@dataclass
class BackendRegistry:
    """Maps a configured ``type`` to the factory that builds it.

    Factories are named as "module:function" and imported only when used, so that
    `certman --help` never pays for boto3 or the acme library. A factory is called as
    ``factory(context, settings)``: ``context`` is the narrow BuildContext
    (certman.contracts.build_context: config path, home, clock, AWS clients, key wrapper,
    account store) and ``settings`` the configuration table. A backend never gets the
    runtime.
    """

    key_wrappers: dict[str, str] = field(default_factory=_default_key_wrappers)
    archive_stores: dict[str, str] = field(default_factory=_default_archive_stores)
    issuers: dict[str, str] = field(default_factory=_default_issuers)
    targets: dict[str, str] = field(default_factory=_default_targets)
    issuer_settings: dict[str, str] = field(default_factory=_default_issuer_settings)
    target_settings: dict[str, str] = field(default_factory=_default_target_settings)

    def settings_keys(self, kind: str, type_name: str) -> frozenset[str] | None:
        """The keys a ``kind`` ("issuers", "targets") table of ``type_name`` takes, "type" and
        "name" included; None when the backend declares none (it checks its table when built)."""
        table: Mapping[str, str] = {
            "issuers": self.issuer_settings,
            "targets": self.target_settings,
        }[kind]
        if type_name not in table:
            return None
        module_name, _, attr = table[type_name].partition(":")
        declared = getattr(importlib.import_module(module_name), attr)
        return frozenset({"type", "name", *declared})

    def check_table(self, kind: str, name: str, table: Mapping[str, Any], source: str) -> None:
        """Refuse a key the backend of ``table`` does not take, naming KIND.NAME.KEY and file."""
        type_name = str(table.get("type", ""))
        known = self.settings_keys(kind, type_name)
        unknown = sorted(set(table) - known) if known is not None else []
        if unknown:
            noun = f"{'an' if type_name[:1] in 'aeiou' else 'a'} {type_name} {kind[:-1]}"
            takes = ", ".join(sorted(known - {"type", "name"})) if known else ""
            raise ConfigError(
                f"Unknown key {kind}.{name}.{unknown[0]} in {source}; {noun} takes: {takes}."
            )

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
