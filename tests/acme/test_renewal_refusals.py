"""A renewal that cannot proceed never makes a certificate with a valid revision look dead."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest

from certman.clock import FrozenClock
from certman.config import load_config
from certman.errors import IssuanceError
from certman.lifecycle.states import RevisionState
from certman.service.lifecycle import Lifecycle
from certman.service.runtime import Runtime
from tests.acme.conftest import AcmeHome
from tests.components.pebble import Pebble, PebbleOptions, port_is_free


@pytest.fixture
def busy_port(acme_home: AcmeHome) -> Iterator[socket.socket]:
    """A socket ready to take Pebble's HTTP-01 port (bound when the test says so)."""
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    yield busy
    busy.close()


@pytest.fixture(scope="module")
def no_reuse_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A Pebble that never reuses a valid authorization: a renewal must solve again."""
    options = PebbleOptions(authz_reuse=0)
    with Pebble(tmp_path_factory.mktemp("pebble-no-reuse"), options) as running:
        yield running


def take(busy: socket.socket, acme_home: AcmeHome) -> None:
    busy.bind(("127.0.0.1", acme_home.pebble.http_port))
    busy.listen()


def runtime_at(acme_home: AcmeHome, clock: FrozenClock) -> Runtime:
    return Runtime(config=load_config(acme_home.home, acme_home.config_path), clock=clock)


def test_a_busy_port_refuses_a_renewal_before_it_is_planned(
    acme_home: AcmeHome, busy_port: socket.socket
) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "renew-busy.example.com").exit_code == 0
    acme_home.verified("web", "renew-busy.example.com")
    take(busy_port, acme_home)
    result = acme_home.cli("renew", "web", "--force")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert f"127.0.0.1:{acme_home.pebble.http_port} is already in use" in result.stderr
    (only,) = acme_home.revisions("web")
    assert only.state == "active", "no renewal revision may be planned"
    cert = acme_home.certificate("web")
    assert cert is not None
    assert cert.status == "active", "revision 1 still serves: the certificate is not dead"
    assert cert.failures == 1 and cert.last_error and "already in use" in cert.last_error
    assert cert.next_attempt_at is not None and cert.renewal_due_at is not None
    busy_port.close()
    # Once due and past its back-off, the service's query picks it up and renews it.
    clock = FrozenClock(max(cert.renewal_due_at, cert.next_attempt_at) + timedelta(seconds=1))
    rt = runtime_at(acme_home, clock)
    lifecycle = Lifecycle(rt)
    assert lifecycle.due() == ["web"]
    assert lifecycle.renew("web").state == RevisionState.ACTIVE
    acme_home.verified("web", "renew-busy.example.com")
    assert port_is_free(acme_home.pebble.http_port)


def test_a_port_taken_during_a_renewal_keeps_the_certificate_active_and_retrying(
    acme_home: AcmeHome, busy_port: socket.socket, no_reuse_pebble: Pebble
) -> None:
    acme_home.pebble = no_reuse_pebble
    acme_home.configure(
        directory=no_reuse_pebble.directory_url,
        ca_bundle=str(no_reuse_pebble.ca_bundle),
        http_address=f"127.0.0.1:{no_reuse_pebble.http_port}",
    )
    assert acme_home.issue("web", "renew-taken.example.com").exit_code == 0
    acme_home.verified("web", "renew-taken.example.com")

    def take_the_port(_name: str, number: int, state: RevisionState) -> None:
        if number == 2 and state == RevisionState.KEY_SEALED:  # the precheck passed
            take(busy_port, acme_home)

    rt = acme_home.runtime()
    with pytest.raises(IssuanceError) as error:
        Lifecycle(rt, observers=[take_the_port]).renew("web", force=True)
    assert error.value.retryable
    first, second = acme_home.revisions("web")
    assert (first.state, second.state) == ("active", "ordered")
    cert = acme_home.certificate("web")
    assert cert is not None and cert.status == "active" and cert.current_revision == 1
    assert cert.next_attempt_at is not None
    busy_port.close()
    later = runtime_at(acme_home, FrozenClock(cert.next_attempt_at + timedelta(seconds=1)))
    lifecycle = Lifecycle(later)
    assert lifecycle.unfinished() == ["web"], "the service resumes it after the back-off"
    assert lifecycle.renew("web").state == RevisionState.ACTIVE
    first, second = acme_home.revisions("web")
    assert (first.state, second.state) == ("superseded", "active")
    assert second.order_url, "the same order was resumed"
    acme_home.verified("web", "renew-taken.example.com")
    rt.engine.dispose()
