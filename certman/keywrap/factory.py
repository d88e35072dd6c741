"""Registry factory for the local master key wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from certman.keywrap.local import LocalMasterKey

if TYPE_CHECKING:
    from certman.contracts.build_context import BuildContext


def build_local(context: BuildContext, settings: Mapping[str, Any]) -> LocalMasterKey:
    return LocalMasterKey.load(context.master_key_path, clock=context.clock)
