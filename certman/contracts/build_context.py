"""What a backend factory is built from, besides its own settings: the narrow build context.

The composition root (certman.service.runtime) makes one and passes it to every factory
registered in certman.registry, as ``factory(context, settings)``. A backend never sees the
runtime, the inventory session or the configuration as a whole: only these few things.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from certman.clock import Clock

if TYPE_CHECKING:
    from certman.contracts.account_store import AccountStore
    from certman.contracts.issuer import Issuer
    from certman.contracts.key_wrapper import KeyWrapper


class AwsClientFactory(Protocol):
    """boto3 clients from [aws], built once per (service, region) and shared."""

    region: str

    def client(self, service: str, region: str | None = None, *, setting: str = "") -> Any:
        """The ``service`` client of ``region`` (None: [aws] region); another region is
        refused naming ``setting``, the configuration key or flag it came from."""
        ...


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """The ground-floor things a factory may use.

    ``aws``, ``key_wrapper``, ``acme_accounts`` and ``private_ca`` are called when a
    factory needs them, never before: building the key wrapper may itself need this
    context, and `certman --help` never pays for boto3.
    """

    config_path: Path  # named in every configuration error
    home: Path
    clock: Clock
    master_key_path: Path  # [kms] master_key_file, resolved against the home
    archive_path: Path  # [archive] path, resolved against the home
    key_wrapper_type: str  # [kms] type: the wrapper that seals; others only open old records
    aws: Callable[[], AwsClientFactory]
    key_wrapper: Callable[[], KeyWrapper]
    acme_accounts: Callable[[str, str], AccountStore]  # (issuer, directory) -> its store
    private_ca: Callable[[str], Issuer]  # a private CA of the inventory, by name
