"""Staged rollouts: ACM first, a canary, then waves; verified, and rolled back on failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certman.contracts.deployer import (
    CleanupRequest,
    Deployer,
    DeployRequest,
    Material,
    RollbackRequest,
    RolloutPrecheckRequest,
    SupportsAcmStrategy,
    SupportsCleanup,
    SupportsForget,
    SupportsRegion,
    SupportsRolloutPrecheck,
    SupportsUnits,
    SupportsWaves,
    VerifyRequest,
)
from certman.errors import CertmanError, DeployError, ValidationError
from certman.lifecycle.states import RevisionState, transition

if TYPE_CHECKING:
    from certman.inventory.tables import ManagedCertificate
    from certman.service.runtime import Runtime
    from certman.service.steps import Work

log = logging.getLogger("certman.deploy")

States = dict[str, dict[str, str]]


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
    if canary is not None:
        chosen = [u for u in rest if canary in (u.unit, u.target, u.key)]
        if not chosen:
            known = ", ".join(u.unit or u.target for u in rest) or "none (only acm targets)"
            raise ValidationError(f"--canary {canary!r} is not among the units: {known}.")
        first = chosen[0]
    elif rest:
        first = rest[0]
    else:
        return plan
    plan.append([first])
    remaining = [u for u in rest if u is not first]
    current: list[Unit] = []
    for unit in remaining:
        deployer = rt.deployer(unit.target)
        size = deployer.wave_size if isinstance(deployer, SupportsWaves) else 1
        if current and (current[0].target != unit.target or len(current) >= size):
            plan.append(current)
            current = []
        current.append(unit)
    if current:
        plan.append(current)
    return plan


def target_order(rt: Runtime, targets: list[str]) -> list[str]:
    """ACM targets first, then the others in the order given."""
    kinds = {t: str(rt.config.targets.get(t, {}).get("type", "")) for t in targets}
    return sorted(targets, key=lambda t: (kinds[t] != "acm", targets.index(t)))


def target_region(deployer: Deployer) -> str:
    """The AWS region of a target ("" for one outside AWS, or following [aws] region)."""
    return deployer.region if isinstance(deployer, SupportsRegion) else ""


def acm_strategies(rt: Runtime, targets: list[str]) -> dict[str, str]:
    """Per AWS region, how the rollout's acm target there takes a renewal ("reimport" or
    "new-arn"); a region without an acm target among ``targets`` is absent."""
    strategies: dict[str, str] = {}
    for target in targets:
        deployer = rt.deployer(target)
        if deployer.target_type == "acm" and isinstance(deployer, SupportsAcmStrategy):
            strategies.setdefault(target_region(deployer), deployer.strategy)
    return strategies


def known_arns(
    rt: Runtime, cert: ManagedCertificate, states: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The certificate's ACM ARN per region: ``acm_arn`` for the [aws] region (the primary
    one; the data model keeps only that one), and for every other region the ARN its acm
    target recorded in ``states`` (the per-unit deploy state)."""
    from certman.aws.clients import region_of

    arns: dict[str, str] = {}
    for key, state in states.items():
        target = key.partition("|")[0]
        if state.get("acm_arn") and rt.config.targets.get(target, {}).get("type") == "acm":
            region = target_region(rt.deployer(target))
            if region != rt.aws.region:
                arns[region] = state["acm_arn"]
    if cert.acm_arn:
        arns[region_of(cert.acm_arn)] = cert.acm_arn
    return arns


def precheck_targets(
    rt: Runtime,
    targets: list[str],
    acm_arn: str | None,
    *,
    name: str = "",
    arns: Mapping[str, str] | None = None,
    probe: bool = False,
    server_name: str | None = None,
) -> None:
    """Refuse, before anything is switched (and before issuance), what a target can tell
    will fail: an elbv2 target with no ARN to use, quotas, a probe nothing answers."""
    deployers = {t: rt.deployer(t) for t in targets}  # an unknown target is refused here
    if arns is None:
        from certman.aws.clients import region_of

        arns = {region_of(acm_arn): acm_arn} if acm_arn else {}
    importing = {target_region(d) for d in deployers.values() if d.target_type == "acm"}
    for deployer in deployers.values():
        if isinstance(deployer, SupportsRolloutPrecheck):
            region = target_region(deployer)
            deployer.precheck_rollout(
                RolloutPrecheckRequest(
                    name=name,
                    acm_arn=arns.get(region),
                    acm_in_rollout=region in importing,
                    probe=probe,
                    server_name=server_name,
                )
            )


def roll_out(
    rt: Runtime,
    work: Work,
    targets: list[str],
    *,
    canary: str | None = None,
    again: bool = False,
) -> list[str]:
    """Deploy the revision wave by wave, verifying each wave before the next.

    Progress per unit is kept in ``rev.deploy_state`` and checkpointed, so a resumed rollout
    skips units this revision already reached; ``again`` (an explicit `certman deploy`)
    switches this rollout's units anew. When a deploy or a verify fails, the units this
    rollout changed go back to the previous revision (in reverse order) and DeployError is
    raised; units that already held this revision are left alone. Once every unit verified,
    targets clean up what the earlier state needed (remove_old). Returns notes on that.
    Bad input is refused before anything is switched (InputError, nothing recorded).
    """
    from certman.deploy.probe import server_name_of
    from certman.service.steps import unseal_private_key

    cert, rev = work.cert, work.rev
    assert rev.certificate_pem is not None
    certificate_pem = rev.certificate_pem.encode()
    plan = waves(rt, target_order(rt, targets), canary)
    all_units = [u for wave in plan for u in wave]
    keys = {u.key for u in all_units}
    recorded: States = json.loads(rev.deploy_state or "{}")
    if again:
        earlier = {k: v for k, v in recorded.items() if k in keys}
        done = {k: v for k, v in recorded.items() if k not in keys}  # other targets' records
    else:
        earlier = json.loads(work.previous.deploy_state or "{}") if work.previous else {}
        done = recorded
    arns = known_arns(rt, cert, {**earlier, **done})
    # acm_strategy "new-arn": the new ARN per region, recorded by this rollout's acm unit
    # (the certificate's acm_arn changes only once every unit verified), and the one it
    # replaces on the listeners.
    new_arns, replacing = _new_arns(rt, all_units, done)
    arns.update(new_arns)
    precheck_targets(
        rt,
        targets,
        cert.acm_arn,
        name=cert.name,
        arns=arns,
        # A first issuance may have no server running yet: its verify decides.
        probe=bool(cert.current_revision),
        server_name=server_name_of(certificate_pem),
    )
    key_pem = _pem_key(unseal_private_key(rt, cert.name, rev))
    attempted: Unit | None = None
    try:
        for wave in plan:
            pending = [u for u in wave if done.get(u.key, {}).get("verified") != "yes"]
            for unit in pending:
                deployer = rt.deployer(unit.target)
                attempted = unit  # a deploy that fails half-way is undone too
                prior = done.get(unit.key, {})
                response = deployer.deploy(
                    DeployRequest(
                        name=cert.name,
                        revision=rev.number,
                        certificate_pem=certificate_pem,
                        chain_pem=(rev.chain_pem or "").encode(),
                        private_key_pem=key_pem,
                        unit=unit.unit,
                        acm_arn=cert.acm_arn
                        if unit.target_type == "acm"
                        else arns.get(target_region(deployer)),
                        previous_state=prior,
                        replaces_acm_arn=None
                        if unit.target_type == "acm"
                        else replacing.get(target_region(deployer)),
                    )
                )
                # What a rollback of this unit needs, and whether there is anything to undo:
                # a unit that already held this revision is left alone by a rollback. An
                # interrupted earlier attempt that changed the unit counts as a change.
                changed = response.changed or (bool(prior) and _changed(prior))
                done[unit.key] = {**response.state, "changed": "yes" if changed else "no"}
                attempted = None
                if unit.target_type == "acm" and response.state.get("acm_arn"):
                    region = target_region(deployer)
                    arns[region] = response.state["acm_arn"]
                    if _is_new_arn(response.state):
                        new_arns[region] = response.state["acm_arn"]
                        replacing[region] = response.state.get("replaces", "")
                    elif region == rt.aws.region:
                        cert.acm_arn = response.state["acm_arn"]  # the primary region's ARN
                # Persisted before the next step: a crash now must not forget the change.
                rev.deploy_state = json.dumps(done, sort_keys=True)
                if work.checkpoint is not None:
                    work.checkpoint()
            for unit in pending:
                check = rt.deployer(unit.target).verify(
                    VerifyRequest(
                        name=cert.name,
                        revision=rev.number,
                        certificate_pem=certificate_pem,
                        unit=unit.unit,
                        state=done[unit.key],
                    )
                )
                if not check.ok:
                    where = f"{unit.target} ({unit.unit})" if unit.unit else unit.target
                    raise DeployError(f"Target {where} did not verify: {check.message}")
            for unit in pending:
                done[unit.key] = {**done[unit.key], "verified": "yes"}
            rev.deploy_state = json.dumps(done, sort_keys=True)
            if any(u.target_type == "acm" for u in pending) and RevisionState(rev.state).in_flight:
                transition(rev, RevisionState.IMPORTED, rt.clock.now(), name=cert.name)
            if pending and work.checkpoint is not None:
                work.checkpoint()
    except CertmanError as error:
        changed_units = [
            u for u in all_units if u == attempted or (u.key in done and _changed(done[u.key]))
        ]
        rollback_note = _roll_back(rt, work, changed_units, done, earlier if again else {}, keys)
        raise DeployError(
            f"Rollout of {cert.name} revision {rev.number} failed: "
            f"{error.message.rstrip('.')}. {rollback_note}",
            retryable=error.retryable,
        ) from error
    finally:
        _forget(rt, targets, cert.name, rev.number)
    if rt.aws.region in new_arns:
        cert.acm_arn = new_arns[rt.aws.region]  # every unit verified on the new ARN
    return _clean_up(rt, work, all_units, done, earlier)


def _is_new_arn(state: Mapping[str, str]) -> bool:
    return state.get("strategy") == "new-arn"


def _new_arns(
    rt: Runtime, units: list[Unit], done: States
) -> tuple[dict[str, str], dict[str, str]]:
    """Per region, the ARN a new-arn acm unit of this rollout imported to, and the ARN it
    replaces, as recorded before a resume."""
    new_arns: dict[str, str] = {}
    replacing: dict[str, str] = {}
    for unit in units:
        state = done.get(unit.key, {})
        if unit.target_type == "acm" and _is_new_arn(state) and state.get("acm_arn"):
            region = target_region(rt.deployer(unit.target))
            new_arns[region] = state["acm_arn"]
            replacing[region] = state.get("replaces", "")
    return new_arns, replacing


def _changed(state: Mapping[str, str]) -> bool:
    # Progress recorded before "changed" existed counts as changed (a rollback is safe).
    return state.get("changed", "yes") == "yes"


def _clean_up(
    rt: Runtime, work: Work, units: list[Unit], done: States, earlier: States
) -> list[str]:
    """remove_old and the like, after a fully verified rollout. A failure here leaves the
    rollout standing (the new revision serves everywhere) and is reported as a note. ACM
    comes last: a replaced ARN is deleted only once the listeners let go of it."""
    notes = []
    for unit in sorted(units, key=lambda u: u.target_type == "acm"):
        deployer = rt.deployer(unit.target)
        state = done.get(unit.key, {})
        if not isinstance(deployer, SupportsCleanup):
            continue
        if not earlier.get(unit.key) and not _is_new_arn(state):
            continue
        try:
            note = deployer.clean_up(
                CleanupRequest(
                    name=work.cert.name,
                    revision=work.rev.number,
                    unit=unit.unit,
                    state=state,
                    earlier=earlier.get(unit.key, {}),
                )
            )
        except CertmanError as e:
            note = f"could not clean up {unit.key}: {e.message}"
            log.warning("%s: %s", work.cert.name, note)
        if note:
            notes.append(note)
    return notes


def _roll_back(
    rt: Runtime,
    work: Work,
    units: list[Unit],
    done: States,
    earlier: States,
    keys: set[str],
) -> str:
    """Undo in reverse order; every rollback is attempted even if one fails."""
    kept = {k: v for k, v in done.items() if k not in keys}
    kept.update(earlier)  # the units hold again what they held before this rollout
    work.rev.deploy_state = json.dumps(kept, sort_keys=True) if kept else None
    if not units:
        if work.checkpoint is not None:
            work.checkpoint()
        return "Nothing had been switched."
    previous = _previous_material(rt, work)
    failures = []
    for unit in reversed(units):
        deployer = rt.deployer(unit.target)
        state = done.get(unit.key, {})
        try:
            deployer.rollback(
                RollbackRequest(
                    name=work.cert.name,
                    revision=work.rev.number,
                    unit=unit.unit,
                    state=state,
                    previous=previous,
                )
            )
        except CertmanError as e:
            failures.append(f"target {unit.key}: {e.message.rstrip('.')}")
            continue
        primary = unit.target_type == "acm" and target_region(deployer) == rt.aws.region
        if primary and previous is None and state.get("created") == "yes":
            work.cert.acm_arn = None  # the ACM certificate made for this first issuance is gone
    if work.checkpoint is not None:
        work.checkpoint()
    if failures:
        return "Rollback incomplete for " + "; for ".join(failures) + "."
    restored = f"revision {previous.revision}" if previous else "their previous state"
    return f"Every unit this rollout had switched went back to {restored}."


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
        if isinstance(deployer, SupportsForget):
            deployer.forget(name, revision)


def _pem_key(der: bytes) -> bytes:
    from certman.pki import load_private_key_der, private_key_pem

    return private_key_pem(load_private_key_der(der))
