"""A real SoftHSM2 token for the pkcs11 key wrapper, one per test session.

The session's token directory is tests/components/fixtures.py's (SoftHSM2 reads
SOFTHSM2_CONF once per process, so every folder shares it). Tests keep out
of each other's way by using their own key labels.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.components.fixtures import OTHER_PIN, OTHER_TOKEN, PIN, TOKEN
from tests.components.required import missing_component
from tests.components.softhsm import SoftHsm, softhsm_available

__all__ = ["OTHER_PIN", "OTHER_TOKEN", "PIN", "TOKEN"]

if not softhsm_available():  # scripts/test.sh installs it
    missing_component("SoftHSM2 is not installed (apt-get install softhsm2)", module_level=True)


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
