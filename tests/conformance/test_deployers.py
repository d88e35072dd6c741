"""The deployer contract, run over every backend (files + reload on nginx, ACM on moto):
deploy, verify, roll back, and deploying the same material twice changes nothing."""

from __future__ import annotations

import pytest

from certman.contracts.deployer import RollbackRequest, VerifyRequest
from tests.aws.pki import Leaf, TestCA
from tests.conformance.conftest import DeployerBackend, unique


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def serial(leaf: Leaf) -> str:
    return leaf.serial.lstrip("0")


def deploy(backend: DeployerBackend, leaf: Leaf, name: str, revision: int, **kw: object):  # type: ignore[no-untyped-def]
    return backend.runtime.deployer(backend.target).deploy(
        leaf.request(name=name, revision=revision, **kw)
    )


def test_a_deployed_revision_is_served_and_verifies(
    deployer_backend: DeployerBackend, ca: TestCA
) -> None:
    assert deployer_backend.served is not None
    name, leaf = unique("web"), ca.leaf()
    target = deployer_backend.runtime.deployer(deployer_backend.target)

    response = deploy(deployer_backend, leaf, name, 1)

    assert response.changed
    state = dict(response.state)
    assert deployer_backend.served("", state).lstrip("0") == serial(leaf)
    check = target.verify(
        VerifyRequest(name=name, revision=1, certificate_pem=leaf.certificate_pem, state=state)
    )
    assert check.ok, check.message


def test_verify_refuses_a_certificate_the_target_does_not_serve(
    deployer_backend: DeployerBackend, ca: TestCA
) -> None:
    name = unique("web")
    target = deployer_backend.runtime.deployer(deployer_backend.target)
    state = dict(deploy(deployer_backend, ca.leaf(), name, 1).state)
    other = ca.leaf()
    check = target.verify(
        VerifyRequest(name=name, revision=1, certificate_pem=other.certificate_pem, state=state)
    )
    assert not check.ok


def test_deploying_the_same_material_again_changes_nothing(
    deployer_backend: DeployerBackend, ca: TestCA
) -> None:
    assert deployer_backend.served is not None
    name, leaf = unique("web"), ca.leaf()
    first = deploy(deployer_backend, leaf, name, 1)
    state = dict(first.state)
    acm_arn = state.get("acm_arn")

    again = deploy(deployer_backend, leaf, name, 1, acm_arn=acm_arn, previous_state=state)

    assert not again.changed, again.message
    assert dict(again.state) == state
    assert deployer_backend.served("", state).lstrip("0") == serial(leaf)


def test_a_rollback_restores_the_previous_revision_and_is_idempotent(
    deployer_backend: DeployerBackend, ca: TestCA
) -> None:
    assert deployer_backend.served is not None
    name, old, new = unique("web"), ca.leaf(), ca.leaf()
    target = deployer_backend.runtime.deployer(deployer_backend.target)
    old_state = dict(deploy(deployer_backend, old, name, 1).state)
    state = dict(deploy(deployer_backend, new, name, 2, acm_arn=old_state.get("acm_arn")).state)
    assert deployer_backend.served("", state).lstrip("0") == serial(new)

    rollback = RollbackRequest(name=name, revision=2, state=state, previous=old.material(1))
    target.rollback(rollback)
    assert deployer_backend.served("", state).lstrip("0") == serial(old)
    target.rollback(rollback)
    assert deployer_backend.served("", state).lstrip("0") == serial(old)
