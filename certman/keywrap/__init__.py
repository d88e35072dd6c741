"""Key wrappers: envelope encryption of private keys and archives (local, KMS, PKCS#11)."""

from __future__ import annotations

from certman.keywrap.envelope import ALGORITHM, open_sealed, rewrap, seal
from certman.keywrap.local import LocalMasterKey, MasterKeyVersion

__all__ = ["ALGORITHM", "LocalMasterKey", "MasterKeyVersion", "open_sealed", "rewrap", "seal"]
