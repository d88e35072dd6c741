"""Crash safety: an issuance killed right after its order exists resumes that same order."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.acme.ari_server import AriServer
from tests.acme.conftest import AcmeHome, verify_chain

# Runs the real lifecycle in its own process and SIGKILLs it the moment the order URL is
# committed (the lifecycle's observers run right after each committed step).
KILLED_ISSUANCE = """
import os, signal, sys
from datetime import timedelta
from pathlib import Path
from certman.config import load_config
from certman.lifecycle.states import RevisionState
from certman.models import KeyType
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime

home = Path(sys.argv[1])
rt = Runtime(config=load_config(home, home / "certman.toml"))

def die(name, number, state):
    if state == RevisionState.ORDERED:
        os.kill(os.getpid(), signal.SIGKILL)

lifecycle = Lifecycle(rt, observers=[die])
lifecycle.plan(IssueSpec(name="crash", domains=tuple(sys.argv[2:]), issuer="pebble",
                         key_type=KeyType.EC_P256, validity=timedelta(days=90)))
lifecycle.advance("crash")
"""


def test_a_killed_issuance_resumes_the_same_order(acme_home: AcmeHome, ari: AriServer) -> None:
    acme_home.configure(directory=ari.directory_url)
    names = ["crash.example.com", "www.crash.example.com"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_ISSUANCE, str(acme_home.home), *names],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    (rev,) = acme_home.revisions("crash")
    assert rev.state == "ordered" and rev.order_url
    assert rev.sealed_key, "the key was sealed and committed before the order"
    order_url = rev.order_url
    assert len(ari.log.new_orders) == 1

    resumed = acme_home.issue("crash", *names)
    assert resumed.exit_code == 0, resumed.stderr
    assert "Resuming the unfinished issuance of crash" in resumed.stderr
    (rev,) = acme_home.revisions("crash")
    assert rev.state == "active" and rev.order_url == order_url
    assert len(ari.log.new_orders) == 1, "no second order may be placed"
    assert rev.certificate_pem and rev.chain_pem
    verify_chain(rev.certificate_pem, rev.chain_pem, acme_home.pebble.root_pem, names)


def test_an_order_the_server_no_longer_knows_is_replaced(
    acme_home: AcmeHome, ari: AriServer
) -> None:
    acme_home.configure(directory=ari.directory_url)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_ISSUANCE, str(acme_home.home), "gone.example.com"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    # Point the stored order at one the server never had (as after an order expired).
    rt = acme_home.runtime()
    with rt.session() as session:
        from sqlmodel import select

        from certman.inventory.tables import Revision

        rev = session.exec(select(Revision)).one()
        assert rev.order_url
        rev.order_url = rev.order_url.rsplit("/", 1)[0] + "/does-not-exist"
        session.add(rev)
        session.commit()
    resumed = acme_home.issue("crash", "gone.example.com")
    assert resumed.exit_code == 0, resumed.stderr
    (rev,) = acme_home.revisions("crash")
    assert rev.state == "active" and not rev.order_url.endswith("/does-not-exist")  # type: ignore[union-attr]
    acme_home.verified("crash", "gone.example.com")
    assert len(ari.log.new_orders) == 2
