"""Many orders with Pebble rejecting nonces, and short-lived certificates renewed on time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certman.clock import FrozenClock
from certman.config import load_config
from certman.models import KeyType
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime
from tests.acme.conftest import AcmeHome, verify_chain
from tests.components.pebble import Pebble, PebbleOptions

VALIDITY = 120  # seconds: Pebble's certificateValidityPeriod for this module


@pytest.fixture(scope="module")
def strict_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """10 % of good nonces rejected (PEBBLE_WFE_NONCEREJECT), two-minute certificates."""
    options = PebbleOptions(nonce_reject=10, validity_seconds=VALIDITY, authz_reuse=0)
    with Pebble(tmp_path_factory.mktemp("pebble-strict"), options) as running:
        yield running


@pytest.fixture
def strict_home(acme_home: AcmeHome, strict_pebble: Pebble) -> AcmeHome:
    acme_home.pebble = strict_pebble
    acme_home.configure()
    return acme_home


def spec(name: str, *domains: str) -> IssueSpec:
    return IssueSpec(
        name=name,
        domains=domains,
        issuer="pebble",
        key_type=KeyType.EC_P256,
        validity=timedelta(days=90),
    )


def test_twenty_orders_pass_with_nonce_rejection_on(
    strict_home: AcmeHome, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="certman.acme")
    rt = strict_home.runtime()
    rt.issuer("pebble")  # built once, shared by the concurrent orders

    def issue(i: int) -> str:
        lifecycle = Lifecycle(rt)
        lifecycle.plan(spec(f"c{i}", f"c{i}.example.com", f"www.c{i}.example.com"))
        return lifecycle.advance(f"c{i}").state.value

    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(issue, range(20)))
    assert states == ["active"] * 20
    for i in range(20):
        (rev,) = strict_home.revisions(f"c{i}")
        assert rev.certificate_pem and rev.chain_pem
        verify_chain(
            rev.certificate_pem,
            rev.chain_pem,
            strict_home.pebble.root_pem,
            [f"c{i}.example.com", f"www.c{i}.example.com"],
        )
    retries = [r for r in caplog.records if r.getMessage().startswith("badNonce")]
    assert retries, "Pebble really rejected nonces, and certman retried them"


def test_short_lived_certificates_are_renewed(strict_home: AcmeHome, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC))
    rt = Runtime(config=load_config(strict_home.home, strict_home.config_path), clock=clock)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(spec("short", "short.example.com"))
    assert lifecycle.advance("short").state.value == "active"
    (first,) = strict_home.revisions("short")
    assert first.not_before and first.not_after
    assert first.not_after - first.not_before <= timedelta(seconds=VALIDITY + 1)
    cert = strict_home.certificate("short")
    assert cert is not None and cert.renewal_due_at is not None
    assert lifecycle.due() == []
    clock.set(cert.renewal_due_at)
    assert lifecycle.due() == ["short"]
    outcome = lifecycle.renew("short")
    assert (outcome.revision, outcome.state.value) == (2, "active")
    old, new = strict_home.revisions("short")
    assert old.state == "superseded" and new.serial != old.serial
    assert new.not_after and new.not_after >= old.not_after  # type: ignore[operator]
    assert new.certificate_pem and new.chain_pem
    verify_chain(
        new.certificate_pem, new.chain_pem, strict_home.pebble.root_pem, ["short.example.com"]
    )
