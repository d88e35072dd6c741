"""Crash safety: SIGKILL after every committed step, then resume.

A child process issues (or renews) and kills itself with SIGKILL the moment the observed
revision reaches the target state (observers run after each step's commit). The test then
resumes as `certman renew --due` would and checks DESIGN.md's promises: no key lost or
regenerated, never two certificates for one revision, the previous revision intact until
the new one is active.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from certman.config import load_config
from certman.contracts.issuer import IssueRequest, IssueResponse, KeyIssueRequest, PrecheckRequest
from certman.inventory.tables import AuditEvent, ManagedCertificate, Revision
from certman.lifecycle.states import RevisionState
from certman.models import KeyType, WrappedKey
from certman.pki import certificate_facts, load_certificate, load_private_key_der, public_key_der
from certman.service.authorities import load_private_ca
from certman.service.checks import verify_archive, verify_audit
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime
from certman.service.steps import key_context
from tests.conftest import Cli

S = RevisionState
STEPS = [S.PLANNED, S.KEY_SEALED, S.ISSUED, S.ARCHIVED, S.DEPLOYED, S.ACTIVE]

# One interpreter imports certman once, then forks a fresh child per scenario: each child
# builds its own runtime (no connection is shared across the fork), runs the scenario and
# SIGKILLs itself at the target state; the parent reports how the child ended.
FORK_SERVER = """
import os, signal, sys
from datetime import timedelta
from pathlib import Path

from certman.config import load_config
from certman.models import KeyType
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime


# The private CA, except that the process dies the moment a leaf is signed: after the
# CA's work, before the lifecycle commits it. The leaf is kept for the test.
class KilledAfterSigning:

    def __init__(self, inner, home):
        self.inner, self.name, self.home = inner, inner.name, home

    def plan_issue(self, request):
        return self.inner.plan_issue(request)

    def issue_for_key(self, request):
        response = self.inner.issue_for_key(request)
        (self.home / "signed-before-the-kill.pem").write_bytes(response.certificate_pem)
        os.kill(os.getpid(), signal.SIGKILL)


def scenario(home, target, mode):
    runtime = Runtime(config=load_config(home, home / "certman.toml"))
    if mode.endswith("-signed"):
        from certman.service.authorities import load_private_ca

        runtime._issuers["default"] = KilledAfterSigning(load_private_ca(runtime, "default"), home)
        mode = mode.removesuffix("-signed")
    wanted = 1 if mode == "issue" else 2

    def kill_at_target(name, number, state):
        if state == target and number == wanted:
            os.kill(os.getpid(), signal.SIGKILL)

    lifecycle = Lifecycle(runtime, observers=[kill_at_target])
    if mode == "issue":
        lifecycle.plan(IssueSpec(name="web", domains=("www.example.com",), issuer="default",
                                 key_type=KeyType.EC_P256, validity=timedelta(days=90)))
        lifecycle.advance("web")
    else:
        lifecycle.renew("web", force=True)


for line in sys.stdin:
    home, target, mode = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            scenario(Path(home), target, mode)
        finally:
            os._exit(3)  # only reached when the target state never came
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class ForkServer:
    def __init__(self, log: Path) -> None:
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def run(self, home: Path, target: RevisionState, mode: str) -> int:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{home} {target.value} {mode}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.log.read_text()
        return int(line)

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self._stderr.close()


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("crash") / "fork-server.log")
    yield server
    server.close()


class CountingIssuer:
    """Wraps the private CA and counts every certificate it signs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.signed = 0

    def precheck(self, request: PrecheckRequest) -> None:
        self.inner.precheck(request)

    def issue(self, request: IssueRequest) -> IssueResponse:
        self.signed += 1
        return self.inner.issue(request)  # type: ignore[no-any-return]

    def issue_for_key(self, request: KeyIssueRequest) -> IssueResponse:
        self.signed += 1
        return self.inner.issue_for_key(request)  # type: ignore[no-any-return]


def runtime_for(home: Path) -> Runtime:
    return Runtime(config=load_config(home, home / "certman.toml"))


def revisions(rt: Runtime) -> list[Revision]:
    with rt.session() as session:
        return list(session.exec(select(Revision).order_by(col(Revision.number))).all())


def certificate(rt: Runtime) -> ManagedCertificate:
    with rt.session() as session:
        return session.exec(select(ManagedCertificate)).one()


def sealed_public_key(rt: Runtime, rev: Revision) -> bytes:
    assert rev.sealed_key is not None
    der = rt.key_wrapper.unwrap(
        WrappedKey.from_json(rev.sealed_key), key_context("web", rev.number)
    )
    return public_key_der(load_private_key_der(der).public_key())


def certificate_public_key(rev: Revision) -> bytes:
    assert rev.certificate_pem is not None
    return public_key_der(load_certificate(rev.certificate_pem.encode()).public_key())


def kill_child_at(server: ForkServer, home: Path, target: RevisionState, mode: str) -> None:
    code = server.run(home, target, mode)
    assert code == -signal.SIGKILL, f"the child ended with {code}:\n{server.log.read_text()}"


def resume(rt: Runtime) -> CountingIssuer:
    """What `certman renew --due` does, with the CA's signatures counted."""
    counting = CountingIssuer(load_private_ca(rt, "default"))
    rt._issuers["default"] = counting  # type: ignore[assignment]
    lifecycle = Lifecycle(rt)
    for name in dict.fromkeys([*lifecycle.unfinished(), *lifecycle.due()]):
        lifecycle.renew(name)
    return counting


def first_issue(home: Path) -> Revision:
    rt = runtime_for(home)
    lifecycle = Lifecycle(rt)
    lifecycle.plan(
        IssueSpec(
            name="web",
            domains=("www.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=90),
        )
    )
    lifecycle.advance("web")
    (rev,) = revisions(rt)
    rt.engine.dispose()
    return rev


def audit_actions(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return [e.action for e in session.exec(select(AuditEvent)).all()]


@pytest.mark.parametrize("target", STEPS, ids=[s.value for s in STEPS])
def test_first_issuance_killed_after_each_step_resumes_without_losing_or_repeating_work(
    initialised_home: Path, target: RevisionState, fork_server: ForkServer
) -> None:
    kill_child_at(fork_server, initialised_home, target, "issue")
    rt = runtime_for(initialised_home)
    (killed,) = revisions(rt)
    assert killed.state == target  # the step was committed before the kill
    sealed_before, serial_before = killed.sealed_key, killed.serial
    if STEPS.index(target) >= STEPS.index(S.KEY_SEALED):
        assert sealed_before is not None
    if STEPS.index(target) >= STEPS.index(S.ISSUED):
        assert serial_before is not None

    counting = resume(rt)

    (rev,) = revisions(rt)  # still one revision: nothing was started over
    assert rev.number == 1
    assert rev.state == S.ACTIVE
    already_issued = STEPS.index(target) >= STEPS.index(S.ISSUED)
    assert counting.signed == (0 if already_issued else 1)  # one certificate per revision
    if sealed_before is not None:
        assert rev.sealed_key == sealed_before  # the key sealed before the kill, not a new one
    if serial_before is not None:
        assert rev.serial == serial_before
    assert sealed_public_key(rt, rev) == certificate_public_key(rev)
    cert = certificate(rt)
    assert (cert.status, cert.current_revision, cert.serial) == ("active", 1, rev.serial)
    assert verify_archive(rt).ok
    verify_audit(rt)
    assert audit_actions(rt).count("certificate.issue") == 1
    rt.engine.dispose()


@pytest.mark.parametrize("target", STEPS, ids=[s.value for s in STEPS])
def test_renewal_killed_after_each_step_resumes_and_keeps_the_previous_revision_until_active(
    initialised_home: Path, target: RevisionState, fork_server: ForkServer
) -> None:
    first = first_issue(initialised_home)
    kill_child_at(fork_server, initialised_home, target, "renew")
    rt = runtime_for(initialised_home)
    previous, killed = revisions(rt)
    assert killed.state == target
    cert = certificate(rt)
    if target != S.ACTIVE:
        # the previous revision is untouched and still the certificate's
        assert previous.model_dump(exclude={"updated_at"}) == first.model_dump(
            exclude={"updated_at"}
        )
        assert previous.state == S.ACTIVE
        assert (cert.status, cert.current_revision, cert.serial) == ("active", 1, first.serial)
    sealed_before, serial_before = killed.sealed_key, killed.serial

    counting = resume(rt)

    previous, rev = revisions(rt)  # exactly two revisions
    assert rev.number == 2
    assert rev.state == S.ACTIVE
    assert previous.state == S.SUPERSEDED
    assert previous.serial == first.serial
    assert previous.certificate_pem == first.certificate_pem
    already_issued = STEPS.index(target) >= STEPS.index(S.ISSUED)
    assert counting.signed == (0 if already_issued else 1)
    if sealed_before is not None:
        assert rev.sealed_key == sealed_before
    if serial_before is not None:
        assert rev.serial == serial_before
    assert sealed_public_key(rt, rev) == certificate_public_key(rev)
    assert certificate_public_key(rev) != certificate_public_key(previous)
    cert = certificate(rt)
    assert (cert.status, cert.current_revision, cert.serial) == ("active", 2, rev.serial)
    assert verify_archive(rt).ok
    verify_audit(rt)
    assert audit_actions(rt).count("certificate.renew") == 1
    rt.engine.dispose()


def test_renew_due_on_the_cli_finishes_a_killed_renewal(
    initialised_home: Path, cli: Cli, fork_server: ForkServer
) -> None:
    import json

    first_issue(initialised_home)
    kill_child_at(fork_server, initialised_home, S.ISSUED, "renew")
    serial = revisions(runtime_for(initialised_home))[1].serial
    result = cli.ok("renew", "--due")
    assert result.stdout.strip() == "web: revision 2 active."
    view = json.loads(cli.ok("show", "web", "--json").stdout)
    assert view["serial"] == serial
    assert [r["state"] for r in view["revisions"]] == ["superseded", "active"]
    cli.ok("archive", "verify")


def test_issue_on_the_cli_resumes_a_killed_first_issuance(
    initialised_home: Path, cli: Cli, fork_server: ForkServer
) -> None:
    kill_child_at(fork_server, initialised_home, S.KEY_SEALED, "issue")
    sealed = revisions(runtime_for(initialised_home))[0].sealed_key
    result = cli.ok("issue", "web", "-d", "www.example.com")
    assert "Resuming the unfinished issuance of web" in result.stderr
    assert "web: revision 1 active" in result.stdout
    assert revisions(runtime_for(initialised_home))[0].sealed_key == sealed


def test_a_missing_master_key_does_not_fail_a_killed_renewal(
    initialised_home: Path, cli: Cli, fork_server: ForkServer
) -> None:
    first_issue(initialised_home)
    kill_child_at(fork_server, initialised_home, S.ISSUED, "renew")
    key = initialised_home / "master.key"
    saved = key.read_bytes()
    key.unlink()
    result = cli("renew", "--due")
    assert result.exit_code == 1
    assert "master key file" in result.stderr
    rt = runtime_for(initialised_home)
    assert [r.state for r in revisions(rt)] == [S.ACTIVE, S.ISSUED]  # still resumable
    assert certificate(rt).status == "active"
    key.write_bytes(saved)
    key.chmod(0o600)
    cli.ok("renew", "--due")
    assert [r.state for r in revisions(rt)] == [S.SUPERSEDED, S.ACTIVE]


@pytest.mark.parametrize("mode", ["issue", "renew"])
def test_a_kill_between_signing_and_its_commit_resumes_with_the_same_certificate(
    initialised_home: Path, fork_server: ForkServer, mode: str
) -> None:
    """The CA signed, the process died before ISSUED was committed: the resume signs the
    planned serial and validity again and gets that very certificate, not a second one."""
    if mode == "renew":
        first_issue(initialised_home)
    number = 1 if mode == "issue" else 2
    # The target state is never reached: the child dies inside the issuance step.
    kill_child_at(fork_server, initialised_home, S.ACTIVE, f"{mode}-signed")
    signed = (initialised_home / "signed-before-the-kill.pem").read_bytes()
    rt = runtime_for(initialised_home)
    killed = revisions(rt)[number - 1]
    assert killed.state == S.KEY_SEALED  # the certificate was recorded nowhere
    facts = certificate_facts(signed)
    assert killed.serial == facts.serial  # the plan was committed with the key
    assert (killed.not_before, killed.not_after) == (facts.not_before, facts.not_after)

    counting = resume(rt)

    rev = revisions(rt)[number - 1]
    assert rev.state == S.ACTIVE
    assert counting.signed == 1
    assert rev.certificate_pem is not None
    assert rev.certificate_pem.encode() == signed  # byte for byte the one signed before
    assert certificate(rt).serial == facts.serial
    assert verify_archive(rt).ok
    rt.engine.dispose()
