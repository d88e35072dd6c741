"""An ACME issuance in flight is never taken for an interrupted one: `renew --due` or
`serve --once` started while `certman issue` waits on Pebble leave it alone, so the CA
issues one certificate per revision."""

from __future__ import annotations

import time

import pytest

from tests.acme.ari_server import AriServer
from tests.acme.conftest import AcmeHome
from tests.service.test_concurrent_commands import Home, activation_events, assert_checks_clean

pytestmark = pytest.mark.slow

# (what starts while the issuance runs, seconds after it started)
ROUNDS = [(other, delay) for delay in (0.4, 0.9, 1.4) for other in ("renew --due", "serve --once")]


def test_an_acme_issuance_in_flight_is_left_to_its_process(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    acme_home.configure(directory=ari.directory_url)
    home = Home(path=acme_home.home, signed=acme_home.home.parent / "signed.log")
    names = [f"a{n}" for n in range(len(ROUNDS))]
    for name, (other, delay) in zip(names, ROUNDS, strict=True):
        home.start("issue", name, "--issuer", "pebble", "-d", f"{name}.example.com")
        time.sleep(delay)
        home.start(*other.split())
        home.wait_all()

    assert len(ari.log.finalized) == len(names), "one certificate per revision at the CA"
    for name in names:
        (rev,) = acme_home.revisions(name)
        assert rev.state == "active", (name, rev.state, rev.error)
    rt = acme_home.runtime()
    try:
        events = activation_events(rt)
    finally:
        rt.engine.dispose()
    assert events == {(name, 1): 1 for name in names}
    assert_checks_clean(home)
