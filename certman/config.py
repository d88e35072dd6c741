"""Configuration: a TOML file where every key has a default, checked against one schema."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from certman.durations import parse_duration
from certman.errors import ConfigError, ValidationError
from certman.models import KeyType
from certman.names import name_problem
from certman.redact import redact_webhook_url, remember_secrets, url_secrets

CONFIG_FILENAME = "certman.toml"

# section -> key -> default. The schema is the single list of fixed keys; config.example.toml
# documents each of them (a test keeps the two in step). Named sections ([issuers.NAME],
# [targets.NAME]) are checked by the backend that reads them.
SCHEMA: dict[str, dict[str, Any]] = {
    "database": {"url": ""},
    "kms": {
        "type": "local",
        "master_key_file": "master.key",
        "key_id": "",
        "cache_max_age": "",
        "cache_max_uses": 0,
        "module": "",
        "token_label": "certman",
        "pin_env": "CERTMAN_HSM_PIN",
        "key_label": "certman-wrap",
    },
    "archive": {
        "type": "local",
        "path": "archive",
        "bucket": "",
        "prefix": "archive/",
        "sse": "s3",
        "kms_key_id": "",
        "bucket_key": True,
        "client_side": False,
    },
    "defaults": {
        "issuer": "default",
        "key_type": "ec-p256",
        "validity": "90d",
        "renew_before": "",
        "reuse_key": False,
    },
    "ca": {
        "key_type": "ec-p256",
        "common_name": "certman private CA",
        "max_validity": "397d",
        "root_validity": "3650d",
        "intermediate_validity": "1825d",
        "crl_url": "",
        "crl_next_update": "7d",
        "allowed_key_types": [],
        "allow_wildcards": True,
        "client_auth": False,
        "key_store": "sealed",
    },
    "aws": {"region": "us-east-1", "profile": "", "endpoint_url": ""},
    "logging": {"level": "info"},
    "service": {
        "interval": "60s",
        "listen": "127.0.0.1:9464",
        "jitter": "30s",
        "max_backoff": "32h",
        "preflight_interval": "24h",
        "lease": "10m",
    },
    "notify": {
        "thresholds": ["30d", "14d", "7d", "3d", "1d"],
        "webhook": {"url": ""},
        "sns": {"topic_arn": ""},
    },
}
NAMED_SECTIONS = ("issuers", "targets")
# An issuer's name is its private CA's by default, so both follow the rule for CA names.
MAX_SECTION_NAME = 63
# Duration keys where 0 makes sense (no jitter).
ZERO_OK = frozenset({"jitter"})
# Sections whose keys are checked where they are read (none today).
OPEN_SECTIONS: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Config:
    """The effective configuration: defaults overlaid with the file, paths resolved."""

    home: Path
    path: Path
    sections: Mapping[str, Mapping[str, Any]]
    issuers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    file_exists: bool = False

    def get(self, section: str, key: str) -> Any:
        return self.sections[section][key]

    def duration(self, section: str, key: str) -> timedelta | None:
        """A duration key; an empty string means "not set"."""
        raw = self.get(section, key)
        if raw in ("", None):
            return None
        try:
            return parse_duration(raw, field=f"{section}.{key}", allow_zero=key in ZERO_OK)
        except ValidationError as e:
            raise ConfigError(f"{e} (in {self.path})") from None

    def required_duration(self, section: str, key: str) -> timedelta:
        """A duration key that must be set (an empty value is refused, naming the key)."""
        value = self.duration(section, key)
        if value is None:
            raise ConfigError(f"{section}.{key} must be set to a duration (in {self.path}).")
        return value

    def key_type(self, section: str, key: str) -> KeyType:
        try:
            return KeyType.parse(self.get(section, key), field=f"{section}.{key}")
        except ValidationError as e:
            raise ConfigError(f"{e} (in {self.path})") from None

    def key_types(self, section: str, key: str) -> tuple[KeyType, ...]:
        """A list of key types (an empty list: none given)."""
        values = self.get(section, key)
        result = []
        for value in values:
            if not isinstance(value, str):
                raise ConfigError(
                    f'{section}.{key} holds {value!r}; write key types like "ec-p256" '
                    f"(in {self.path})."
                )
            try:
                result.append(KeyType.parse(value, field=f"{section}.{key}"))
            except ValidationError as e:
                raise ConfigError(f"{e} (in {self.path})") from None
        return tuple(result)

    def home_path(self, section: str, key: str) -> Path:
        """A path key; relative paths are relative to the home directory."""
        value = Path(os.path.expanduser(str(self.get(section, key))))
        return value if value.is_absolute() else self.home / value

    def secrets(self) -> list[str]:
        """What no output may show: the database password, the webhook's path and query."""
        webhook = self.get("notify", "webhook")
        url = str(webhook.get("url", "")) if isinstance(webhook, dict) else ""
        return [*url_secrets(str(self.get("database", "url"))), *url_secrets(url, webhook=True)]

    @property
    def database_url(self) -> str:
        url = str(self.get("database", "url"))
        return url or f"sqlite:///{self.home / 'certman.db'}"

    @property
    def master_key_path(self) -> Path:
        return self.home_path("kms", "master_key_file")

    @property
    def archive_path(self) -> Path:
        return self.home_path("archive", "path")


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    chosen = home or os.environ.get("CERTMAN_HOME") or "~/.certman"
    return Path(os.path.expanduser(str(chosen))).absolute()


def resolve_config_path(home: Path, config: str | os.PathLike[str] | None) -> Path:
    chosen = config or os.environ.get("CERTMAN_CONFIG")
    if chosen:
        return Path(os.path.expanduser(str(chosen))).absolute()
    return home / CONFIG_FILENAME


def load_config(home: Path, path: Path) -> Config:
    """Read ``path`` (if it exists) over the defaults; any mistake names the key and the file."""
    raw: dict[str, Any] = {}
    exists = path.exists()
    if exists:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"The configuration file {path} is not valid TOML: {e}.") from None
        except UnicodeDecodeError as e:
            # TOML is UTF-8 (toml.io, "Spec").
            raise ConfigError(
                f"The configuration file {path} is not UTF-8 text (byte {e.start + 1} cannot be "
                "read); save it as UTF-8."
            ) from None
        except OSError as e:
            raise ConfigError(
                f"The configuration file {path} cannot be read: {e.strerror}."
            ) from None
    return _build(home, path, raw, exists)


def parse_config_text(home: Path, path: Path, text: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"The configuration file {path} is not valid TOML: {e}.") from None
    return _build(home, path, raw, True)


def _build(home: Path, path: Path, raw: Mapping[str, Any], exists: bool) -> Config:
    sections: dict[str, dict[str, Any]] = {name: dict(keys) for name, keys in SCHEMA.items()}
    named: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in NAMED_SECTIONS}
    for name, value in raw.items():
        if name in NAMED_SECTIONS:
            named[name] = _named_section(path, name, value)
            continue
        if name in OPEN_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] in {path} must be a table.")
            sections[name] = dict(value)
            continue
        if name not in SCHEMA:
            known = ", ".join(sorted([*SCHEMA, *NAMED_SECTIONS, *OPEN_SECTIONS]))
            raise ConfigError(f"Unknown section [{name}] in {path}; known sections: {known}.")
        if not isinstance(value, dict):
            raise ConfigError(f"{name} in {path} must be a table ([{name}]), not a value.")
        for key, item in value.items():
            if key not in SCHEMA[name]:
                known = ", ".join(SCHEMA[name])
                raise ConfigError(f"Unknown key {name}.{key} in {path}; [{name}] takes: {known}.")
            default = SCHEMA[name][key]
            if not isinstance(item, type(default)) or (
                isinstance(item, bool) and not isinstance(default, bool)
            ):
                raise ConfigError(
                    f"{name}.{key} in {path} must be a {_type_word(default)}, not {item!r}."
                )
            if isinstance(default, dict):
                _check_table(path, f"{name}.{key}", default, item)
                item = {**default, **item}
            sections[name][key] = item
    for section in SCHEMA:
        sections.setdefault(section, dict(SCHEMA[section]))
    for section in OPEN_SECTIONS:
        sections.setdefault(section, {})
    config = Config(
        home=home,
        path=path,
        sections=sections,
        issuers=named["issuers"],
        targets=named["targets"],
        file_exists=exists,
    )
    remember_secrets(config.secrets())
    _check_values(config)
    return config


def _named_section(path: Path, name: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or any(not isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"[{name}] in {path} must hold named tables like [{name}.NAME].")
    for entry, body in value.items():
        problem = name_problem(entry, max_length=MAX_SECTION_NAME)
        if problem:
            raise ConfigError(
                f"The {name[:-1]} name {entry!r} in {path} is not valid ([{name}.NAME]); {problem}."
            )
        if "type" not in body:
            raise ConfigError(f'{name}.{entry} in {path} has no type; set type = "...".')
    return {entry: dict(body) for entry, body in value.items()}


def _check_table(path: Path, where: str, default: dict[str, Any], item: dict[str, Any]) -> None:
    for key, value in item.items():
        if key not in default:
            known = ", ".join(default)
            raise ConfigError(f"Unknown key {where}.{key} in {path}; [{where}] takes: {known}.")
        if not isinstance(value, type(default[key])):
            raise ConfigError(
                f"{where}.{key} in {path} must be a {_type_word(default[key])}, not {value!r}."
            )


def _type_word(default: Any) -> str:
    if isinstance(default, bool):
        return "boolean (true or false)"
    if isinstance(default, int):
        return "whole number"
    if isinstance(default, list):
        return "list"
    return "string"


def _check_values(config: Config) -> None:
    """Values that must parse, checked at load so that the error names the file."""
    for section, key in (
        ("defaults", "validity"),
        ("defaults", "renew_before"),
        ("ca", "max_validity"),
        ("ca", "root_validity"),
        ("ca", "intermediate_validity"),
        ("ca", "crl_next_update"),
        ("service", "interval"),
        ("service", "jitter"),
        ("service", "max_backoff"),
        ("service", "preflight_interval"),
        ("service", "lease"),
    ):
        config.duration(section, key)
    _check_service(config)
    _check_kms(config)
    _check_database_and_logging(config)
    config.key_type("defaults", "key_type")
    config.key_type("ca", "key_type")
    config.key_types("ca", "allowed_key_types")
    _check_named_tables(config)


def _check_named_tables(config: Config) -> None:
    """Each [issuers.NAME] and [targets.NAME] table against the keys its backend declares."""
    from certman.registry import BackendRegistry

    registry = BackendRegistry()
    for kind, tables in (("issuers", config.issuers), ("targets", config.targets)):
        for name, table in tables.items():
            registry.check_table(kind, name, table, str(config.path))


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The databases the inventory runs on (DESIGN.md "Inventory"); the driver may follow a "+".
DATABASE_DIALECTS = ("sqlite", "postgresql")


def _check_database_and_logging(config: Config) -> None:
    level = str(config.get("logging", "level"))
    if level.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"logging.level in {config.path} must be one of {', '.join(LOG_LEVELS)}, not {level!r}."
        )
    url = str(config.get("database", "url"))
    scheme, separator, _ = url.partition(":")
    if url and (not separator or scheme.split("+", 1)[0].lower() not in DATABASE_DIALECTS):
        # Only the scheme is repeated: the rest of a URL may hold a password.
        shown = f"a {scheme!r} URL" if separator else "a URL"
        raise ConfigError(
            f"database.url in {config.path} is not {shown} certman can use; give "
            "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (or leave it empty for SQLite "
            "in the home)."
        )


def _check_kms(config: Config) -> None:
    """[kms] type = "pkcs11" (or CA keys in the HSM) needs a token, a key label and the PIN."""
    store = str(config.get("ca", "key_store"))
    if store not in ("sealed", "hsm"):
        raise ConfigError(
            f'ca.key_store must be "sealed" (keys sealed by [kms]) or "hsm" (generated in the '
            f"PKCS#11 token of [kms]), not {store!r} (in {config.path})."
        )
    if store == "hsm":
        _check_hsm_settings(config, 'ca.key_store is "hsm"', ("module", "token_label", "pin_env"))
    if config.get("kms", "type") == "pkcs11":
        _check_hsm_settings(
            config, '[kms] type is "pkcs11"', ("module", "token_label", "key_label", "pin_env")
        )


def _check_hsm_settings(config: Config, why: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not str(config.get("kms", key)).strip():
            raise ConfigError(
                f"{why} but kms.{key} is empty (in {config.path}); "
                "set module to the HSM's PKCS#11 library, token_label and key_label to the "
                "token and AES key to use, pin_env to the variable that holds the PIN."
            )


def _check_service(config: Config) -> None:
    """[service] and [notify]: what `certman serve` would otherwise trip over hours later."""
    where = f"(in {config.path})"
    host, sep, port = str(config.get("service", "listen")).rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"service.listen must be host:port, e.g. 127.0.0.1:9464 {where}.")
    for threshold in config.get("notify", "thresholds"):
        if not isinstance(threshold, str):
            raise ConfigError(
                f'notify.thresholds holds {threshold!r}; write durations like "14d" {where}.'
            )
        try:
            parse_duration(threshold, field="notify.thresholds")
        except ValidationError as e:
            raise ConfigError(f"{e} {where}") from None
    url = str(config.get("notify", "webhook")["url"])
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(
            f"notify.webhook.url must be an http(s) URL, not {redact_webhook_url(url)!r} {where}."
        )
    arn = str(config.get("notify", "sns")["topic_arn"])
    if arn and (not arn.startswith("arn:") or arn.split(":")[2:3] != ["sns"]):
        raise ConfigError(
            f"notify.sns.topic_arn must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), "
            f"not {arn!r} {where}."
        )
