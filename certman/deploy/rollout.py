"""Staged rollouts: ACM first, a canary, then waves; verified, and rolled back on failure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certman.errors import CertmanError, DeployError, ValidationError
from certman.interfaces import (
    Deployer,
    DeployRequest,
    Material,
    RollbackRequest,
    SupportsUnits,
    VerifyRequest,
)
from certman.models import RevisionState

if TYPE_CHECKING:
    from certman.service.runtime import Runtime
    from certman.service.steps import Work


@dataclass(frozen=True, kw_only=True)
class Unit:
    """One independently switched part of a target: a listener, or the whole target."""

    target: str
    unit: str
    target_type: str

    @property
    def key(self) -> str:
        return f"{self.target}|{self.unit}" if self.unit else self.target


def units_of(rt: Runtime, targets: list[str]) -> list[Unit]:
    result: list[Unit] = []
    for target in targets:
        deployer = rt.deployer(target)
        parts = deployer.units() if isinstance(deployer, SupportsUnits) else [""]
        result.extend(Unit(target=target, unit=u, target_type=deployer.target_type) for u in parts)
    return result


def waves(rt: Runtime, targets: list[str], canary: str | None = None) -> list[list[Unit]]:
    """ACM imports first (listeners use the ARN they record); then the canary alone; then the
    remaining units in waves of each target's ``wave_size`` (default 1)."""
    units = units_of(rt, targets)
    imports = [u for u in units if u.target_type == "acm"]
    rest = [u for u in units if u.target_type != "acm"]
    plan = [[u] for u in imports]
    if not rest:
        return plan
    if canary is not None:
        chosen = [u for u in rest if canary in (u.unit, u.target, u.key)]
        if not chosen:
            known = ", ".join(u.unit or u.target for u in rest)
            raise ValidationError(f"--canary {canary!r} is not among the units: {known}.")
        first = chosen[0]
    else:
        first = rest[0]
    plan.append([first])
    remaining = [u for u in rest if u is not first]
    current: list[Unit] = []
    for unit in remaining:
        size = max(1, int(rt.config.targets.get(unit.target, {}).get("wave_size", 1)))
        if current and (current[0].target != unit.target or len(current) >= size):
            plan.append(current)
            current = []
        current.append(unit)
    if current:
        plan.append(current)
    return plan


def precheck_targets(rt: Runtime, targets: list[str], acm_arn: str | None) -> None:
    """Refuse, before anything is switched, what a target can tell will fail (quotas)."""
    for target in targets:
        precheck = getattr(rt.deployer(target), "precheck", None)
        if precheck is not None:
            precheck(acm_arn)


def target_order(rt: Runtime, targets: list[str]) -> list[str]:
    """ACM targets first, then the others in the order given."""
    kinds = {t: str(rt.config.targets.get(t, {}).get("type", "")) for t in targets}
    return sorted(targets, key=lambda t: (kinds[t] != "acm", targets.index(t)))


def roll_out(rt: Runtime, work: Work, targets: list[str], *, canary: str | None = None) -> None:
    """Deploy the revision wave by wave, verifying each wave before the next.

    Progress per unit is kept in ``rev.deploy_state`` and checkpointed, so a resumed rollout
    skips units this revision already reached. When a deploy or a verify fails, every unit
    already switched goes back to the previous revision (in reverse order) and DeployError
    is raised.
    """
    from certman.service.steps import unseal_private_key

    cert, rev = work.cert, work.rev
    assert rev.certificate_pem is not None
    done: dict[str, dict[str, str]] = json.loads(rev.deploy_state or "{}")
    key_pem = _pem_key(unseal_private_key(rt, cert.name, rev))
    switched: list[Unit] = []
    plan = waves(rt, target_order(rt, targets), canary)
    all_units = [u for wave in plan for u in wave]
    precheck_targets(rt, targets, cert.acm_arn)
    try:
        for wave in plan:
            pending = [u for u in wave if done.get(u.key, {}).get("verified") != "yes"]
            states: dict[str, dict[str, str]] = {}
            for unit in pending:
                deployer = rt.deployer(unit.target)
                switched.append(unit)  # before deploy: a deploy that fails half-way is undone too
                response = deployer.deploy(
                    DeployRequest(
                        name=cert.name,
                        revision=rev.number,
                        certificate_pem=rev.certificate_pem.encode(),
                        chain_pem=(rev.chain_pem or "").encode(),
                        private_key_pem=key_pem,
                        unit=unit.unit,
                        acm_arn=cert.acm_arn,
                        previous_state=done.get(unit.key, {}),
                    )
                )
                states[unit.key] = dict(response.state)
                done[unit.key] = states[unit.key]  # what a rollback of this unit needs
                if states[unit.key].get("acm_arn"):
                    cert.acm_arn = states[unit.key]["acm_arn"]
            for unit in pending:
                check = rt.deployer(unit.target).verify(
                    VerifyRequest(
                        name=cert.name,
                        revision=rev.number,
                        certificate_pem=rev.certificate_pem.encode(),
                        unit=unit.unit,
                        state=states[unit.key],
                    )
                )
                if not check.ok:
                    where = f"{unit.target} ({unit.unit})" if unit.unit else unit.target
                    raise DeployError(f"Target {where} did not verify: {check.message}")
            for unit in pending:
                done[unit.key] = {**states[unit.key], "verified": "yes"}
            rev.deploy_state = json.dumps(done, sort_keys=True)
            if any(u.target_type == "acm" for u in pending) and RevisionState(rev.state).in_flight:
                rev.state = RevisionState.IMPORTED
            if pending and work.checkpoint is not None:
                work.checkpoint()
    except CertmanError as error:
        reached = [u for u in all_units if u.key in done or u in switched]
        rollback_note = _roll_back(rt, work, reached, done)
        raise DeployError(
            f"Rollout of {cert.name} revision {rev.number} failed: {error.message} "
            + rollback_note,
            retryable=error.retryable,
        ) from error
    finally:
        _forget(rt, targets, cert.name, rev.number)


def _roll_back(rt: Runtime, work: Work, units: list[Unit], done: dict[str, dict[str, str]]) -> str:
    """Undo in reverse order; every rollback is attempted even if one fails."""
    if not units:
        return "Nothing had been switched."
    previous = _previous_material(rt, work)
    failures = []
    for unit in reversed(units):
        try:
            rt.deployer(unit.target).rollback(
                RollbackRequest(
                    name=work.cert.name,
                    revision=work.rev.number,
                    unit=unit.unit,
                    state=done.get(unit.key, {}),
                    previous=previous,
                )
            )
        except CertmanError as e:
            failures.append(f"{unit.key}: {e.message}")
    work.rev.deploy_state = None
    if previous is None and any(done.get(u.key, {}).get("created") == "yes" for u in units):
        work.cert.acm_arn = None  # the ACM certificate made for this first issuance is gone
    if work.checkpoint is not None:
        work.checkpoint()
    if failures:
        return "Rollback incomplete: " + "; ".join(failures)
    restored = f"revision {previous.revision}" if previous else "their previous state"
    return f"Every target already switched went back to {restored}."


def _previous_material(rt: Runtime, work: Work) -> Material | None:
    from certman.service.steps import unseal_private_key

    prev = work.previous
    if prev is None or prev.certificate_pem is None or prev.sealed_key is None:
        return None
    return Material(
        revision=prev.number,
        certificate_pem=prev.certificate_pem.encode(),
        chain_pem=(prev.chain_pem or "").encode(),
        private_key_pem=_pem_key(unseal_private_key(rt, work.cert.name, prev)),
    )


def _forget(rt: Runtime, targets: list[str], name: str, revision: int) -> None:
    for target in targets:
        deployer: Deployer = rt.deployer(target)
        forget = getattr(deployer, "forget", None)
        if forget is not None:
            forget(name, revision)


def _pem_key(der: bytes) -> bytes:
    from certman.pki import load_private_key_der, private_key_pem

    return private_key_pem(load_private_key_der(der))
