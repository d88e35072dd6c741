"""HTTP-01 against Pebble: standalone (DNS + IP names), webroot, busy port, failing challenge."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.acme.conftest import AcmeHome, verify_chain
from tests.components.pebble import port_is_free


def test_standalone_issues_dns_and_ip_names_with_a_verified_chain(acme_home: AcmeHome) -> None:
    acme_home.configure()
    result = acme_home.issue("web", "www.example.com", "api.example.com", "127.0.0.1")
    assert result.exit_code == 0, result.stderr
    (rev,) = acme_home.revisions("web")
    assert rev.state == "active" and rev.order_url
    assert rev.certificate_pem and rev.chain_pem
    verify_chain(
        rev.certificate_pem,
        rev.chain_pem,
        acme_home.pebble.root_pem,
        ["www.example.com", "api.example.com", "127.0.0.1"],
    )
    assert port_is_free(acme_home.pebble.http_port), "the standalone server must be stopped"


def test_renewal_reuses_the_account_and_verifies(acme_home: AcmeHome) -> None:
    acme_home.configure()
    assert acme_home.issue("web", "renew.example.com").exit_code == 0
    acme_home.verified("web", "renew.example.com")
    renewed = acme_home.cli("renew", "web", "--force")
    assert renewed.exit_code == 0, renewed.stderr
    first, second = acme_home.revisions("web")
    assert (first.state, second.state) == ("superseded", "active")
    assert first.serial != second.serial
    assert second.certificate_pem and second.chain_pem
    verify_chain(
        second.certificate_pem, second.chain_pem, acme_home.pebble.root_pem, ["renew.example.com"]
    )


@pytest.fixture
def web_server(acme_home: AcmeHome, tmp_path: Path) -> Iterator[Path]:
    """A plain web server on Pebble's HTTP-01 port, serving a webroot (as nginx would)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", acme_home.pebble.http_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root
    server.shutdown()
    server.server_close()


def test_webroot_writes_the_token_files_and_removes_them(
    acme_home: AcmeHome, web_server: Path
) -> None:
    acme_home.configure(http_mode="webroot", webroot=str(web_server))
    result = acme_home.issue("site", "static.example.com", "www.static.example.com")
    assert result.exit_code == 0, result.stderr
    assert list(web_server.iterdir()) == [], "no token file or folder may be left behind"
    (rev,) = acme_home.revisions("site")
    assert rev.certificate_pem and rev.chain_pem
    verify_chain(
        rev.certificate_pem,
        rev.chain_pem,
        acme_home.pebble.root_pem,
        ["static.example.com", "www.static.example.com"],
    )


def test_a_busy_port_is_refused_before_anything_is_planned(acme_home: AcmeHome) -> None:
    acme_home.configure()
    port = acme_home.pebble.http_port
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = acme_home.issue("web", "busy.example.com")
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "http_address" in result.stderr
    assert acme_home.certificate("web") is None, "nothing may be planned"
    assert port_is_free(port)


def test_a_failing_challenge_marks_the_revision_failed_and_stops_the_server(
    acme_home: AcmeHome, other_port: int
) -> None:
    # certman listens on another port than the one Pebble validates on: connection refused.
    acme_home.configure(http_address=f"127.0.0.1:{other_port}")
    result = acme_home.issue("web", "unreachable.example.com")
    assert result.exit_code == 1
    assert "Validation failed: unreachable.example.com (http-01)" in result.stderr
    assert "urn:ietf:params:acme:error:connection" in result.stderr
    (rev,) = acme_home.revisions("web")
    assert rev.state == "failed" and rev.certificate_pem is None
    assert port_is_free(other_port), "the standalone server must be stopped after a failure"


def test_wildcards_need_dns01_and_nothing_is_planned(acme_home: AcmeHome) -> None:
    acme_home.configure()
    result = acme_home.issue("wild", "*.example.com")
    assert result.exit_code == 2
    assert 'challenge = "dns-01"' in result.stderr
    assert acme_home.certificate("wild") is None


def test_a_port_taken_during_issuance_is_retryable_and_the_order_resumes(
    acme_home: AcmeHome,
) -> None:
    from datetime import timedelta

    from certman.errors import IssuanceError
    from certman.lifecycle.states import RevisionState
    from certman.models import KeyType
    from certman.service.lifecycle import IssueSpec, Lifecycle

    acme_home.configure()
    port = acme_home.pebble.http_port
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def take_the_port(_name: str, _number: int, state: RevisionState) -> None:
        if state == RevisionState.KEY_SEALED:  # after the precheck found the port free
            busy.bind(("127.0.0.1", port))
            busy.listen()

    rt = acme_home.runtime()
    lifecycle = Lifecycle(rt, observers=[take_the_port])
    spec = IssueSpec(
        name="web",
        domains=("taken.example.com",),
        issuer="pebble",
        key_type=KeyType.EC_P256,
        validity=timedelta(days=90),
    )
    lifecycle.plan(spec)
    with busy, pytest.raises(IssuanceError) as error:
        lifecycle.advance("web")
    assert error.value.retryable and "already in use" in error.value.message
    (rev,) = acme_home.revisions("web")
    assert rev.state == "ordered" and rev.order_url, "the order is kept for the next attempt"
    cert = acme_home.certificate("web")
    assert cert is not None and cert.next_attempt_at is not None
    resumed = acme_home.issue("web", "taken.example.com")  # the port is free again
    assert resumed.exit_code == 0, resumed.stderr
    (after,) = acme_home.revisions("web")
    assert after.state == "active" and after.order_url == rev.order_url
    acme_home.verified("web", "taken.example.com")
    rt.engine.dispose()


def test_a_failed_webroot_validation_leaves_no_token_behind(
    acme_home: AcmeHome, tmp_path: Path
) -> None:
    root = tmp_path / "www"  # no web server serves it: Pebble's validation is refused
    root.mkdir()
    (root / "index.html").write_text("the site's own file")
    acme_home.configure(http_mode="webroot", webroot=str(root))
    result = acme_home.issue("site", "unserved.example.com")
    assert result.exit_code == 1
    assert "Validation failed: unserved.example.com (http-01)" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["index.html"], "tokens and folders removed"
    (rev,) = acme_home.revisions("site")
    assert rev.state == "failed" and rev.certificate_pem is None
