"""Reading a [targets.NAME] table strictly: each bad value is a ConfigError naming key and file."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from certman.durations import parse_duration
from certman.errors import ConfigError, ValidationError


def check_keys(settings: Mapping[str, Any], known: Set[str], where: str, kind: str) -> None:
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"Unknown key {unknown[0]!r} in {where}; {kind} takes: "
            f"{', '.join(sorted(known - {'type', 'name'}))}."
        )


def whole_number(
    settings: Mapping[str, Any], key: str, default: int, where: str, *, minimum: int = 1
) -> int:
    """An integer of at least ``minimum``; TOML strings ("two") and booleans are refused."""
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} = {value!r} in {where} must be a whole number, e.g. {default}.")
    if value < minimum:
        raise ConfigError(f"{key} = {value} in {where} must be at least {minimum}.")
    return value


def boolean(settings: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """A TOML boolean; "false" (a string) is refused, since bool("false") would be True."""
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} in {where} must be true or false (without quotes).")
    return value


def seconds(
    settings: Mapping[str, Any], key: str, default: str, where: str, *, allow_zero: bool = False
) -> float:
    try:
        return parse_duration(
            str(settings.get(key, default)), field=key, allow_zero=allow_zero
        ).total_seconds()
    except ValidationError as e:
        raise ConfigError(f"{e} (in {where})") from None
