"""Archives: every issued bundle, encrypted before it is stored (local directory, S3)."""

from __future__ import annotations

from certman.archive.bundle import (
    Bundle,
    BundleHeader,
    archive_context,
    open_bundle,
    read_header,
    rewrap_bundle,
    seal_bundle,
)
from certman.archive.local import LocalArchiveStore

__all__ = [
    "Bundle",
    "BundleHeader",
    "LocalArchiveStore",
    "archive_context",
    "open_bundle",
    "read_header",
    "rewrap_bundle",
    "seal_bundle",
]
