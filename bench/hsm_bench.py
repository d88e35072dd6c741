"""Seal + unseal through a real SoftHSM2 token (pkcs11) against the local master key.

Each object is a PKCS#8 EC P-256 key under its own encryption context: pkcs11 makes one
C_Encrypt (AES-GCM, context as AAD) per seal and one C_Decrypt per unseal, serialised by the
process-wide PKCS#11 lock; the local master key does both in-process. The reference is the
local master key in the same run; the goal is that sealing through the HSM stays well above
what issuance needs (the bulk path issues about 1,000 certificates a second, so an HSM
ceiling under ~1,000 seals/s would become the bottleneck).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table
from certman.keywrap.local import LocalMasterKey
from certman.keywrap.pkcs11 import Pkcs11KeyWrapper
from certman.keywrap.pkcs11_token import Pkcs11Token
from certman.models import EncryptionContext, KeyType
from certman.pki import generate_private_key, private_key_to_der
from tests.components.softhsm import SoftHsm

OBJECTS = 2000
GOAL_SEALS_PER_SECOND = 1000


def measure(wrapper: object, secret: bytes) -> tuple[float, float]:
    contexts = [
        EncryptionContext(certificate=f"host{i}", revision=1, purpose="private-key")
        for i in range(OBJECTS)
    ]
    start = time.perf_counter()
    sealed = [wrapper.wrap(secret, c) for c in contexts]  # type: ignore[attr-defined]
    seal_s = time.perf_counter() - start
    start = time.perf_counter()
    for record, context in zip(sealed, contexts, strict=True):
        assert wrapper.unwrap(record, context) == secret  # type: ignore[attr-defined]
    return OBJECTS / seal_s, OBJECTS / (time.perf_counter() - start)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="certman-hsm-bench-"))
    hsm = SoftHsm.create(work)
    hsm.init_token("bench", "1234")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    os.environ["CERTMAN_BENCH_PIN"] = "1234"
    secret = private_key_to_der(generate_private_key(KeyType.EC_P256))

    local = LocalMasterKey.create(work / "master.key")
    token = Pkcs11Token(module=str(hsm.module), token_label="bench", pin_env="CERTMAN_BENCH_PIN")
    pkcs11 = Pkcs11KeyWrapper(token=token, key_label="wrap")
    pkcs11.ensure_key()
    measure(pkcs11, secret)  # warm-up: login, key lookup

    local_seal, local_open = measure(local, secret)
    hsm_seal, hsm_open = measure(pkcs11, secret)
    print(
        table(
            ["wrapper", "seals/s", "unseals/s", "vs local (seal)"],
            [
                ["local master key", f"{local_seal:,.0f}", f"{local_open:,.0f}", "1.00x"],
                [
                    "pkcs11 (SoftHSM2)",
                    f"{hsm_seal:,.0f}",
                    f"{hsm_open:,.0f}",
                    f"{hsm_seal / local_seal:.2f}x",
                ],
            ],
        )
    )
    print(f"\n{OBJECTS} objects each; goal: pkcs11 >= {GOAL_SEALS_PER_SECOND} seals/s.")
    return 0 if hsm_seal >= GOAL_SEALS_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
