"""`certman serve` renewing short-lived certificates from a real ACME server (Pebble)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acme.conftest import verify_chain
from tests.components.nginx import free_port
from tests.components.pebble import Pebble, PebbleOptions, pebble_available
from tests.components.required import missing_component
from tests.scheduler.conftest import Webhook, make_home
from tests.scheduler.processes import get, metrics, run, serve, stop, wait_for

if not pebble_available():  # scripts/test.sh installs it: scripts/apt-install.sh pebble
    missing_component("pebble is not installed (apt-get install pebble)", module_level=True)


@pytest.fixture
def short_lived_pebble(tmp_path: Path) -> Iterator[Pebble]:
    """Pebble issuing 40-second certificates (certificateValidityPeriod)."""
    with Pebble(tmp_path / "pebble", PebbleOptions(validity_seconds=40, nonce_reject=5)) as pebble:
        yield pebble


def test_serve_renews_acme_certificates_unattended(
    tmp_path: Path, short_lived_pebble: Pebble, webhook: Webhook
) -> None:
    pebble, port = short_lived_pebble, free_port()
    home = make_home(
        tmp_path / "home",
        f'[service]\ninterval = "1s"\njitter = "0s"\nlisten = "127.0.0.1:{port}"\n'
        f'[notify.webhook]\nurl = "{webhook.url}"\n'
        f'[issuers.pebble]\ntype = "acme"\ndirectory = "{pebble.directory_url}"\n'
        f'ca_bundle = "{pebble.ca_bundle}"\nhttp_address = "127.0.0.1:{pebble.http_port}"\n',
    )
    issued = run(
        home, "issue", "web", "-d", "web.example.com", "--issuer", "pebble",
        "--renew-before", "30s",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr

    def serials() -> list[str]:
        with sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT serial FROM revision WHERE state != 'failed' ORDER BY number")
            return [serial for (serial,) in rows]

    service = serve(home)
    try:
        wait_for(lambda: len(serials()) >= 2, 60, "the ACME renewal")  # due 10 s after issue
        families = metrics(port)
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        code, err = stop(service)
    assert code == 0 and "Traceback" not in err, err
    first, second = serials()[:2]
    assert first != second
    with sqlite3.connect(f"file:{home / 'certman.db'}?mode=ro", uri=True) as db:
        leaf, chain = db.execute(
            "SELECT certificate_pem, chain_pem FROM revision WHERE serial = ?", (second,)
        ).fetchone()
    verify_chain(leaf, chain, pebble.root_pem, ["web.example.com"])  # that run's root
    preflight = families["certman_preflight_ok"].samples
    assert {s.labels["area"]: s.value for s in preflight}.get("issuer pebble") == 1
    assert webhook.of("certman Preflight Failed") == []
