"""Registry factory for the local archive directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certman.archive.local import LocalArchiveStore

if TYPE_CHECKING:
    from certman.contracts.build_context import BuildContext


def build_local(context: BuildContext, settings: Mapping[str, Any]) -> LocalArchiveStore:
    return LocalArchiveStore(context.archive_path)
