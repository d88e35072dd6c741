"""The [issuers.NAME] table of an ACME issuer, checked key by key against the documented schema."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from certman.durations import parse_duration
from certman.errors import ConfigError, ValidationError
from certman.models import KeyType

# Every key an ACME issuer takes, with its default ("" means "not set").
DEFAULTS: dict[str, str] = {
    "type": "acme",
    "directory": "",
    "email": "",
    "ca_bundle": "",
    "account_key_type": "ec-p256",
    "eab_kid": "",
    "eab_hmac_env": "",
    "challenge": "http-01",
    "http_mode": "standalone",
    "webroot": "",
    "http_address": "0.0.0.0:80",
    "dns_provider": "route53",
    "dns_hook": "",
    "hosted_zone_id": "",
    "propagation_timeout": "120s",
    "profile": "",
}
CHOICES: dict[str, tuple[str, ...]] = {
    "challenge": ("http-01", "dns-01"),
    "http_mode": ("standalone", "webroot"),
    "dns_provider": ("route53", "exec"),
}
ACCOUNT_KEY_TYPES = (KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048, KeyType.RSA_3072)


@dataclass(frozen=True, kw_only=True)
class AcmeSettings:
    """One ACME issuer's configuration, every value parsed."""

    name: str
    config_path: Path
    directory: str
    email: str | None
    ca_bundle: Path | None
    account_key_type: KeyType
    eab_kid: str | None
    eab_hmac_env: str | None
    challenge: str
    http_mode: str
    webroot: Path | None
    http_host: str
    http_port: int
    dns_provider: str
    dns_hook: Path | None
    hosted_zone_id: str | None
    propagation_timeout: timedelta
    profile: str | None

    @property
    def table(self) -> str:
        return f"[issuers.{self.name}] of {self.config_path}"

    @property
    def http_address(self) -> str:
        return f"{self.http_host}:{self.http_port}"

    @property
    def verify(self) -> str | bool:
        """What requests verifies the server's TLS with: the bundle, or the system store."""
        return str(self.ca_bundle) if self.ca_bundle else True


def parse_settings(settings: Mapping[str, Any], *, config_path: Path, home: Path) -> AcmeSettings:
    """Check ``settings`` (the table plus "name"); every error names issuers.NAME.key and file."""
    name = str(settings.get("name", "?"))
    values = dict(DEFAULTS)
    for key, value in settings.items():
        if key == "name":
            continue
        where = f"issuers.{name}.{key} in {config_path}"
        if key not in DEFAULTS:
            known = ", ".join(DEFAULTS)
            raise ConfigError(f"Unknown key {where}; an ACME issuer takes: {known}.")
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}.")
        values[key] = value.strip()

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"issuers.{name}.{key} in {config_path} {problem}")

    for key, allowed in CHOICES.items():
        if values[key] not in allowed:
            raise fail(key, f"is {values[key]!r}; use one of: {', '.join(allowed)}.")
    directory = values["directory"]
    if not directory:
        raise fail("directory", "is missing; set it to the ACME server's directory URL.")
    # RFC 8555 section 6.1: ACME runs over HTTPS only.
    if not directory.startswith("https://"):
        raise fail("directory", f"is {directory!r}; an ACME directory URL starts with https://.")
    try:
        key_type = KeyType.parse(values["account_key_type"], field="account_key_type")
    except ValidationError as e:
        raise fail("account_key_type", f"is not valid: {e}") from None
    if key_type not in ACCOUNT_KEY_TYPES:
        usable = ", ".join(k.value for k in ACCOUNT_KEY_TYPES)
        raise fail("account_key_type", f"is {key_type.value}; use one of: {usable}.")
    if bool(values["eab_kid"]) != bool(values["eab_hmac_env"]):
        raise fail(
            "eab_kid" if not values["eab_kid"] else "eab_hmac_env",
            "is missing; External Account Binding needs both eab_kid and eab_hmac_env.",
        )
    ca_bundle = _path(values["ca_bundle"], home)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise fail("ca_bundle", f"names {ca_bundle}, which is not a readable file.")
    webroot = _path(values["webroot"], home)
    if values["challenge"] == "http-01" and values["http_mode"] == "webroot" and webroot is None:
        raise fail("webroot", 'is missing; http_mode = "webroot" needs the directory to write to.')
    dns_hook = _path(values["dns_hook"], home)
    if values["challenge"] == "dns-01" and values["dns_provider"] == "exec":
        if dns_hook is None:
            raise fail("dns_hook", 'is missing; dns_provider = "exec" needs a command to run.')
        if not dns_hook.is_file() or not os.access(dns_hook, os.X_OK):
            raise fail("dns_hook", f"names {dns_hook}, which is not an executable file.")
    host, port = _address(values["http_address"], fail)
    try:
        propagation = parse_duration(values["propagation_timeout"], field="propagation_timeout")
    except ValidationError as e:
        raise fail("propagation_timeout", f"is not valid: {e}") from None
    return AcmeSettings(
        name=name,
        config_path=config_path,
        directory=directory,
        email=values["email"] or None,
        ca_bundle=ca_bundle,
        account_key_type=key_type,
        eab_kid=values["eab_kid"] or None,
        eab_hmac_env=values["eab_hmac_env"] or None,
        challenge=values["challenge"],
        http_mode=values["http_mode"],
        webroot=webroot,
        http_host=host,
        http_port=port,
        dns_provider=values["dns_provider"],
        dns_hook=dns_hook,
        hosted_zone_id=values["hosted_zone_id"] or None,
        propagation_timeout=propagation,
        profile=values["profile"] or None,
    )


def _path(value: str, home: Path) -> Path | None:
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else home / path


def _address(value: str, fail: Any) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise fail("http_address", f"is {value!r}; write HOST:PORT, for example 0.0.0.0:80.")
    return host, int(port_text)
