"""The [issuers.NAME] table of a private CA issuer: which of the inventory's CAs signs."""

from __future__ import annotations

# type = "private-ca", ca = "NAME" (default: the issuer's own name).
ISSUER_KEYS = frozenset({"type", "ca"})
