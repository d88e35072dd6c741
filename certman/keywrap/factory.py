"""Registry factory for the local master key wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certman.keywrap.local import LocalMasterKey

if TYPE_CHECKING:
    from certman.service.runtime import Runtime


def build_local(runtime: Runtime, settings: Mapping[str, Any]) -> LocalMasterKey:
    return LocalMasterKey.load(runtime.config.master_key_path, clock=runtime.clock)
