"""Registry factory for the local archive directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certman.archive.local import LocalArchiveStore

if TYPE_CHECKING:
    from certman.service.runtime import Runtime


def build_local(runtime: Runtime, settings: Mapping[str, Any]) -> LocalArchiveStore:
    return LocalArchiveStore(runtime.config.archive_path)
