"""Staged rollouts: ARN publishers (ACM) first, a canary, then waves; verified, and rolled
back on failure.

A pure executor: it is handed the revision's material, a way to get the previous
revision's (for a rollback), the deployers and a checkpoint callback, and records its
progress in a ``RolloutRecord`` the caller persists. It knows neither the inventory nor
the lifecycle (certman.service.steps and certman.service.deployment build its inputs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from certman.aws.clients import region_of
from certman.contracts.deployer import (
    CleanupRequest,
    Deployer,
    DeployRequest,
    Material,
    PublishesArn,
    RollbackRequest,
    RolloutPrecheckRequest,
    SupportsCleanup,
    SupportsForget,
    SupportsRegion,
    SupportsRolloutPrecheck,
    SupportsUnits,
    SupportsWaves,
    VerifyRequest,
)
from certman.deploy.records import UnitRecord, UnitRecords
from certman.errors import CertmanError, DeployError, ValidationError

log = logging.getLogger("certman.deploy")


@dataclass(frozen=True, kw_only=True)
class Unit:
    """One independently switched part of a target: a listener, or the whole target."""

    target: str
    unit: str
    target_type: str
    publishes_arn: bool = False  # the target publishes an ARN the others use (PublishesArn)

    @property
    def key(self) -> str:
        return f"{self.target}|{self.unit}" if self.unit else self.target


@dataclass(frozen=True, kw_only=True)
class Rollout:
    """Everything a rollout of one revision works from; the executor has no other source."""

    name: str
    revision: int
    certificate_pem: bytes
    chain_pem: bytes
    private_key_pem: Callable[[], bytes] = field(repr=False)  # in memory only
    previous: Callable[[], Material | None]  # what a rollback restores (None: nothing)
    deployers: Mapping[str, Deployer]  # this rollout's targets, in the order given
    # The deployer of any target a record names (None: no longer configured).
    deployer_of: Callable[[str], Deployer | None]
    previous_records: Mapping[str, UnitRecord]  # the previous revision's rollout
    primary_region: str  # [aws] region: the one whose ARN the certificate row keeps
    probe: bool  # also probe the targets' endpoints beforehand (not on a first issuance)
    # A wave of ARN publishers verified (before its checkpoint): the lifecycle moves an
    # in-flight revision to "imported".
    published: Callable[[], None] = lambda: None
    canary: str | None = None
    again: bool = False  # switch this rollout's units anew (an explicit `certman deploy`)


@dataclass
class RolloutRecord:
    """What a rollout changes as it goes; the caller persists it at each checkpoint."""

    units: UnitRecords  # the revision's per-unit records (its deploy_state)
    acm_arn: str | None  # the certificate's ARN in the primary region


@dataclass
class RolloutPlan:
    """The waves, what the units held before, and the ARNs the units are handed."""

    waves: list[list[Unit]]
    earlier: UnitRecords  # what this rollout's units held before it (for clean-up)
    done: UnitRecords  # the records as this rollout goes (other targets' ones included)
    arns: dict[str, str]  # per region, the ARN the units there use
    new_arns: dict[str, str]  # new-arn: per region, the ARN this rollout imported to
    replacing: dict[str, str]  # new-arn: per region, the ARN the new one replaces
    attempted: Unit | None = None  # a deploy that fails half-way is undone too

    @property
    def units(self) -> list[Unit]:
        return [u for wave in self.waves for u in wave]

    @property
    def changed_units(self) -> list[Unit]:
        """The units a rollback undoes: what this rollout changed, and a half-way deploy."""
        return [
            u
            for u in self.units
            if u == self.attempted or (u.key in self.done and self.done[u.key].was_changed)
        ]


def units_of(deployers: Mapping[str, Deployer]) -> list[Unit]:
    result: list[Unit] = []
    for target, deployer in deployers.items():
        parts = deployer.units() if isinstance(deployer, SupportsUnits) else [""]
        publishes = isinstance(deployer, PublishesArn)
        result.extend(
            Unit(target=target, unit=u, target_type=deployer.target_type, publishes_arn=publishes)
            for u in parts
        )
    return result


def waves(deployers: Mapping[str, Deployer], canary: str | None = None) -> list[list[Unit]]:
    """ARN publishers first (listeners use the ARN they record); then the canary alone; then
    the remaining units in waves of each target's ``wave_size`` (default 1)."""
    units = units_of(deployers)
    rest = [u for u in units if not u.publishes_arn]
    plan = [[u] for u in units if u.publishes_arn]
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
    current: list[Unit] = []
    for unit in (u for u in rest if u is not first):
        deployer = deployers[unit.target]
        size = deployer.wave_size if isinstance(deployer, SupportsWaves) else 1
        if current and (current[0].target != unit.target or len(current) >= size):
            plan.append(current)
            current = []
        current.append(unit)
    if current:
        plan.append(current)
    return plan


def target_region(deployer: Deployer) -> str:
    """The AWS region of a target ("" for one outside AWS, or following [aws] region)."""
    return deployer.region if isinstance(deployer, SupportsRegion) else ""


def acm_strategies(deployers: Mapping[str, Deployer]) -> dict[str, str]:
    """Per AWS region, how the rollout's ARN publisher there takes a renewal ("reimport" or
    "new-arn"); a region without one among ``deployers`` is absent."""
    strategies: dict[str, str] = {}
    for deployer in deployers.values():
        if isinstance(deployer, PublishesArn):
            strategies.setdefault(target_region(deployer), deployer.strategy)
    return strategies


def known_arns(
    acm_arn: str | None,
    records: Mapping[str, UnitRecord],
    deployer_of: Callable[[str], Deployer | None],
    primary_region: str,
) -> dict[str, str]:
    """The certificate's ARN per region: ``acm_arn`` for the primary region (the data model
    keeps only that one), and for every other region the ARN its publisher recorded in
    ``records`` (the per-unit deploy records)."""
    arns: dict[str, str] = {}
    for key, record in records.items():
        deployer = deployer_of(key.partition("|")[0]) if record.arn else None
        if isinstance(deployer, PublishesArn):
            region = target_region(deployer)
            if region != primary_region:
                arns[region] = record.arn
    if acm_arn:
        arns[region_of(acm_arn)] = acm_arn
    return arns


def precheck_targets(
    deployers: Mapping[str, Deployer],
    acm_arn: str | None,
    *,
    name: str = "",
    arns: Mapping[str, str] | None = None,
    probe: bool = False,
    server_name: str | None = None,
) -> None:
    """Refuse, before anything is switched (and before issuance), what a target can tell
    will fail: an elbv2 target with no ARN to use, quotas, a probe nothing answers."""
    if arns is None:
        arns = {region_of(acm_arn): acm_arn} if acm_arn else {}
    publishing = {target_region(d) for d in deployers.values() if isinstance(d, PublishesArn)}
    for deployer in deployers.values():
        if isinstance(deployer, SupportsRolloutPrecheck):
            region = target_region(deployer)
            deployer.precheck_rollout(
                RolloutPrecheckRequest(
                    name=name,
                    acm_arn=arns.get(region),
                    acm_in_rollout=region in publishing,
                    probe=probe,
                    server_name=server_name,
                )
            )


def roll_out(rollout: Rollout, record: RolloutRecord, checkpoint: Callable[[], None]) -> list[str]:
    """Deploy the revision wave by wave, verifying each wave before the next.

    Progress per unit is kept in ``record.units`` and checkpointed, so a resumed rollout
    skips units this revision already reached; ``rollout.again`` (an explicit `certman
    deploy`) switches this rollout's units anew. When a deploy or a verify fails, the units
    this rollout changed go back to the previous revision (in reverse order) and
    DeployError is raised; units that already held this revision are left alone. Once every
    unit verified, targets clean up what the earlier state needed (remove_old). Returns
    notes on that. Bad input is refused before anything is switched (InputError, nothing
    recorded).
    """
    plan = plan_rollout(rollout, record)
    key_pem = rollout.private_key_pem()
    try:
        for wave in plan.waves:
            pending = [u for u in wave if not _verified(plan, u)]
            for unit in pending:
                switch(rollout, plan, record, unit, key_pem)
                checkpoint()  # persisted before the next step: a crash must not forget it
            verify(rollout, plan, pending)
            for unit in pending:
                plan.done[unit.key] = plan.done[unit.key].as_verified()
            record.units = plan.done
            if any(u.publishes_arn for u in pending):
                rollout.published()  # the revision is now "imported" (while in flight)
            if pending:
                checkpoint()
    except CertmanError as error:
        rollback_note = roll_back(rollout, plan, record, checkpoint)
        raise DeployError(
            f"Rollout of {rollout.name} revision {rollout.revision} failed: "
            f"{error.message.rstrip('.')}. {rollback_note}",
            retryable=error.retryable,
        ) from error
    finally:
        _forget(rollout)
    if rollout.primary_region in plan.new_arns:
        record.acm_arn = plan.new_arns[rollout.primary_region]  # every unit verified on it
    return clean_up(rollout, plan)


def plan_rollout(rollout: Rollout, record: RolloutRecord) -> RolloutPlan:
    """The waves and what the units start from; refuses bad input before anything switches."""
    from certman.deploy.probe import server_name_of

    plan = waves(rollout.deployers, rollout.canary)
    keys = {u.key for wave in plan for u in wave}
    if rollout.again:
        earlier = {k: v for k, v in record.units.items() if k in keys}
        done = {k: v for k, v in record.units.items() if k not in keys}  # other targets'
    else:
        earlier, done = dict(rollout.previous_records), dict(record.units)
    arns = known_arns(
        record.acm_arn, {**earlier, **done}, rollout.deployer_of, rollout.primary_region
    )
    # acm_strategy "new-arn": the new ARN per region, recorded by this rollout's publisher
    # (the certificate's acm_arn changes only once every unit verified), and the one it
    # replaces on the listeners.
    new_arns: dict[str, str] = {}
    replacing: dict[str, str] = {}
    for unit in (u for wave in plan for u in wave if u.publishes_arn):
        recorded = done.get(unit.key)
        if recorded is not None and recorded.new_arn and recorded.arn:
            region = target_region(rollout.deployers[unit.target])
            new_arns[region], replacing[region] = recorded.arn, recorded.replaces
    arns.update(new_arns)
    precheck_targets(
        rollout.deployers,
        record.acm_arn,
        name=rollout.name,
        arns=arns,
        probe=rollout.probe,  # a first issuance may have no server running yet
        server_name=server_name_of(rollout.certificate_pem),
    )
    return RolloutPlan(
        waves=plan, earlier=earlier, done=done, arns=arns, new_arns=new_arns, replacing=replacing
    )


def _verified(plan: RolloutPlan, unit: Unit) -> bool:
    recorded = plan.done.get(unit.key)
    return recorded is not None and recorded.verified


def switch(
    rollout: Rollout, plan: RolloutPlan, record: RolloutRecord, unit: Unit, key_pem: bytes
) -> None:
    """Deploy the revision to one unit and record what a rollback of it needs."""
    deployer = rollout.deployers[unit.target]
    region = target_region(deployer)
    plan.attempted = unit  # a deploy that fails half-way is undone too
    prior = plan.done.get(unit.key)
    response = deployer.deploy(
        DeployRequest(
            name=rollout.name,
            revision=rollout.revision,
            certificate_pem=rollout.certificate_pem,
            chain_pem=rollout.chain_pem,
            private_key_pem=key_pem,
            unit=unit.unit,
            acm_arn=record.acm_arn if unit.publishes_arn else plan.arns.get(region),
            previous_state=prior.as_json() if prior else {},
            replaces_acm_arn=None if unit.publishes_arn else plan.replacing.get(region),
        )
    )
    # A unit that already held this revision is left alone by a rollback; an interrupted
    # earlier attempt that changed the unit counts as a change.
    changed = response.changed or (prior is not None and prior.was_changed)
    plan.done[unit.key] = switched = UnitRecord(state=dict(response.state), changed=changed)
    plan.attempted = None
    if unit.publishes_arn and switched.arn:
        plan.arns[region] = switched.arn
        if switched.new_arn:
            plan.new_arns[region], plan.replacing[region] = switched.arn, switched.replaces
        elif region == rollout.primary_region:
            record.acm_arn = switched.arn  # the primary region's ARN
    record.units = plan.done


def verify(rollout: Rollout, plan: RolloutPlan, units: list[Unit]) -> None:
    """Raise DeployError for the first of ``units`` that does not serve the revision."""
    for unit in units:
        check = rollout.deployers[unit.target].verify(
            VerifyRequest(
                name=rollout.name,
                revision=rollout.revision,
                certificate_pem=rollout.certificate_pem,
                unit=unit.unit,
                state=plan.done[unit.key].as_json(),
            )
        )
        if not check.ok:
            where = f"{unit.target} ({unit.unit})" if unit.unit else unit.target
            raise DeployError(f"Target {where} did not verify: {check.message}")


def roll_back(
    rollout: Rollout, plan: RolloutPlan, record: RolloutRecord, checkpoint: Callable[[], None]
) -> str:
    """Undo in reverse order what this rollout changed; every rollback is attempted even if
    one fails. Returns what the operator is told about it."""
    units = plan.changed_units
    keys = {u.key for u in plan.units}
    kept = {k: v for k, v in plan.done.items() if k not in keys}
    kept.update(plan.earlier if rollout.again else {})  # they hold again what they held
    record.units = kept
    if not units:
        checkpoint()
        return "Nothing had been switched."
    previous = rollout.previous()
    failures = []
    for unit in reversed(units):
        deployer = rollout.deployers[unit.target]
        recorded = plan.done.get(unit.key, UnitRecord())
        try:
            deployer.rollback(
                RollbackRequest(
                    name=rollout.name,
                    revision=rollout.revision,
                    unit=unit.unit,
                    state=recorded.as_json() if unit.key in plan.done else {},
                    previous=previous,
                )
            )
        except CertmanError as e:
            failures.append(f"target {unit.key}: {e.message.rstrip('.')}")
            continue
        primary = unit.publishes_arn and target_region(deployer) == rollout.primary_region
        if primary and previous is None and recorded.created:
            record.acm_arn = None  # the ARN made for this first issuance is gone
    checkpoint()
    if failures:
        return "Rollback incomplete for " + "; for ".join(failures) + "."
    restored = f"revision {previous.revision}" if previous else "their previous state"
    return f"Every unit this rollout had switched went back to {restored}."


def clean_up(rollout: Rollout, plan: RolloutPlan) -> list[str]:
    """remove_old and the like, after a fully verified rollout. A failure here leaves the
    rollout standing (the new revision serves everywhere) and is reported as a note. ARN
    publishers come last: a replaced ARN is deleted only once the listeners let go of it."""
    notes = []
    for unit in sorted(plan.units, key=lambda u: u.publishes_arn):
        deployer = rollout.deployers[unit.target]
        recorded = plan.done.get(unit.key, UnitRecord())
        earlier = plan.earlier.get(unit.key)
        if not isinstance(deployer, SupportsCleanup):
            continue
        if not (earlier and earlier.as_json()) and not recorded.new_arn:
            continue
        try:
            note = deployer.clean_up(
                CleanupRequest(
                    name=rollout.name,
                    revision=rollout.revision,
                    unit=unit.unit,
                    state=recorded.as_json() if unit.key in plan.done else {},
                    earlier=earlier.as_json() if earlier else {},
                )
            )
        except CertmanError as e:
            note = f"could not clean up {unit.key}: {e.message}"
            log.warning("%s: %s", rollout.name, note)
        if note:
            notes.append(note)
    return notes


def _forget(rollout: Rollout) -> None:
    for deployer in rollout.deployers.values():
        if isinstance(deployer, SupportsForget):
            deployer.forget(rollout.name, rollout.revision)
