"""A real SoftHSM2 token for the pkcs11 key wrapper, one per test session.

SoftHSM2 reads SOFTHSM2_CONF once, when the process first loads the module, so the token
directory is set up for the whole session before any test touches PKCS#11. Tests keep out
of each other's way by using their own key labels.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.required import missing_component
from tests.components.softhsm import SoftHsm, softhsm_available

TOKEN = "certman-test"
PIN = "1234"
OTHER_TOKEN = "certman-other"
OTHER_PIN = "5678"

if not softhsm_available():  # scripts/test.sh installs it
    missing_component("SoftHSM2 is not installed (apt-get install softhsm2)", module_level=True)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    hsm = SoftHsm.create(tmp_path_factory.mktemp("softhsm"))
    hsm.init_token(TOKEN, PIN)
    hsm.init_token(OTHER_TOKEN, OTHER_PIN)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def hsm_pin(monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm) -> str:
    monkeypatch.setenv("CERTMAN_HSM_PIN", PIN)
    return PIN


@pytest.fixture
def key_label() -> str:
    return f"wrap-{uuid.uuid4().hex[:12]}"


def kms_section(softhsm: SoftHsm, key_label: str, token: str = TOKEN) -> str:
    return (
        '[kms]\ntype = "pkcs11"\n'
        f'module = "{softhsm.module}"\ntoken_label = "{token}"\nkey_label = "{key_label}"\n'
    )


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "certman.toml").write_text(text)
