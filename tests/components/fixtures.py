"""The session's real components, shared by every test folder that uses them.

One moto server, one Pebble and one SoftHSM2 token directory per test session, whatever
folders run: a folder's own conftest would start a second one (SoftHSM2 even reads its
configuration only once per process, so a second token directory would be silently
ignored). tests/conftest.py registers these fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.components.moto_server import MotoServer
from tests.components.pebble import Pebble, PebbleOptions, pebble_available
from tests.components.required import missing_component
from tests.components.softhsm import SoftHsm, softhsm_available

BLOCKED = "blocked.example"  # the shared Pebble refuses this domain

TOKEN = "certman-test"
PIN = "1234"
OTHER_TOKEN = "certman-other"
OTHER_PIN = "5678"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """The shared Pebble: 8 % of nonces rejected, one blocked domain."""
    if not pebble_available():  # scripts/test.sh installs it: scripts/apt-install.sh pebble
        missing_component("pebble is not installed (apt-get install pebble)")
    with Pebble(
        tmp_path_factory.mktemp("pebble"),
        PebbleOptions(nonce_reject=8, blocklist=(BLOCKED,)),
    ) as running:
        yield running


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """Two tokens (TOKEN, OTHER_TOKEN); tests keep apart by using their own key labels."""
    if not softhsm_available():  # scripts/test.sh installs it
        missing_component("SoftHSM2 is not installed (apt-get install softhsm2)")
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
