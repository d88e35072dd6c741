"""Rolling one revision out to its targets: deploy, verify, and roll back on any failure."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from certman.errors import CertmanError, DeployError
from certman.interfaces import DeployRequest, RollbackRequest, VerifyRequest
from certman.models import RevisionState

if TYPE_CHECKING:
    from certman.service.runtime import Runtime
    from certman.service.steps import Work


def target_order(rt: Runtime, targets: list[str]) -> list[str]:
    """ACM imports first: load balancer targets use the ARN an ACM target records."""
    kinds = {t: str(rt.config.targets.get(t, {}).get("type", "")) for t in targets}
    return sorted(targets, key=lambda t: (kinds[t] != "acm", targets.index(t)))


def roll_out(rt: Runtime, work: Work, targets: list[str]) -> None:
    """Deploy to every target in order and verify each; on a failure undo those switched.

    Progress is kept per target in ``rev.deploy_state`` (and checkpointed by the driver),
    so a resumed rollout skips targets this revision already reached.
    """
    from certman.service.steps import unseal_private_key

    cert, rev = work.cert, work.rev
    assert rev.certificate_pem is not None
    done: dict[str, dict[str, str]] = json.loads(rev.deploy_state or "{}")
    key_pem = _pem_key(unseal_private_key(rt, cert.name, rev))
    switched: list[str] = []
    for target in target_order(rt, targets):
        if target in done and done[target].get("verified") == "yes":
            continue
        deployer = rt.deployer(target)
        try:
            response = deployer.deploy(
                DeployRequest(
                    name=cert.name,
                    revision=rev.number,
                    certificate_pem=rev.certificate_pem.encode(),
                    chain_pem=(rev.chain_pem or "").encode(),
                    private_key_pem=key_pem,
                    acm_arn=cert.acm_arn,
                    previous_state=done.get(target, {}),
                )
            )
            state = dict(response.state)
            switched.append(target)
            check = deployer.verify(
                VerifyRequest(
                    name=cert.name,
                    revision=rev.number,
                    certificate_pem=rev.certificate_pem.encode(),
                    state=state,
                )
            )
            if not check.ok:
                raise DeployError(f"Target {target!r} did not verify: {check.message}")
        except CertmanError as error:
            _roll_back(rt, work, switched, done)
            raise DeployError(
                f"Rollout of {cert.name} revision {rev.number} failed at target {target!r}: "
                f"{error.message} Targets already switched were rolled back.",
                retryable=error.retryable,
            ) from error
        state["verified"] = "yes"
        done[target] = state
        if state.get("acm_arn"):
            cert.acm_arn = state["acm_arn"]
        rev.deploy_state = json.dumps(done, sort_keys=True)
        if deployer.target_type == "acm":
            rev.state = RevisionState.IMPORTED
        if work.checkpoint is not None:
            work.checkpoint()


def _roll_back(
    rt: Runtime, work: Work, switched: list[str], done: dict[str, dict[str, str]]
) -> None:
    """Undo in reverse order; every rollback is attempted even if one fails."""
    failures = []
    for target in reversed([*done, *switched]):
        try:
            rt.deployer(target).rollback(
                RollbackRequest(
                    name=work.cert.name, revision=work.rev.number, state=done.get(target, {})
                )
            )
        except CertmanError as e:
            failures.append(f"{target}: {e.message}")
    work.rev.deploy_state = None
    if failures:
        raise DeployError("Rollback failed on " + "; ".join(failures))


def _pem_key(der: bytes) -> bytes:
    from certman.pki import load_private_key_der, private_key_pem

    return private_key_pem(load_private_key_der(der))
