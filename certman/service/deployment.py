"""`certman deploy`: roll the active revision out again, or show the plan, without renewing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from certman.contracts.deployer import PlanRequest, PublishesArn, SupportsPlan
from certman.errors import CertmanError, InputError, ValidationError
from certman.inventory.audit import append_event
from certman.inventory.tables import ManagedCertificate, Revision
from certman.lifecycle.states import RevisionState
from certman.service.lifecycle import get_certificate
from certman.service.runtime import Runtime
from certman.service.steps import Work, roll_out_work, targets_of


def _active(rt: Runtime, name: str) -> tuple[ManagedCertificate, Revision, Revision | None]:
    with rt.session() as session:
        cert = get_certificate(session, name)
        revisions = {
            r.number: r
            for r in session.exec(select(Revision).where(Revision.certificate_id == cert.id)).all()
        }
    rev = revisions.get(cert.current_revision)
    if rev is None or rev.certificate_pem is None:
        raise ValidationError(f"Certificate {name!r} has no active revision to deploy.")
    previous = max(
        (
            r
            for n, r in revisions.items()
            if n < rev.number and r.certificate_pem and r.state != RevisionState.FAILED
        ),
        key=lambda r: r.number,
        default=None,
    )
    return cert, rev, previous


def _targets(cert: ManagedCertificate, only: list[str] | None) -> list[str]:
    bound = targets_of(cert)
    if not only:
        if not bound:
            raise ValidationError(
                f"Certificate {cert.name!r} has no targets; bind some with --target at issue "
                "time or name one with --target."
            )
        return bound
    return list(dict.fromkeys(only))


def deploy_plan(
    rt: Runtime, name: str, only: list[str] | None = None, canary: str | None = None
) -> dict[str, Any]:
    """What a deployment would change, wave by wave; touches nothing."""
    from certman.contracts.deployer import SupportsRegion
    from certman.deploy.records import load_records
    from certman.deploy.rollout import acm_strategies, known_arns, target_region, waves
    from certman.pki import certificate_facts

    cert, rev, _ = _active(rt, name)
    assert rev.certificate_pem is not None
    facts = certificate_facts(rev.certificate_pem.encode())
    plan = []
    arns = known_arns(
        cert.acm_arn,
        load_records(rev.deploy_state),
        lambda t: rt.deployer(t) if t in rt.config.targets else None,
        rt.aws.region,
    )
    deployers = {t: rt.deployer(t) for t in _targets(cert, only)}
    strategies = acm_strategies(deployers)
    for number, wave in enumerate(waves(deployers, canary), 1):
        for unit in wave:
            deployer = deployers[unit.target]
            # The strategy of the acm target in this unit's region (None outside AWS).
            strategy = (
                strategies.get(target_region(deployer), "reimport")
                if isinstance(deployer, SupportsRegion)
                else None
            )
            current = (
                deployer.plan(
                    PlanRequest(
                        name=name,
                        certificate_pem=rev.certificate_pem.encode(),
                        unit=unit.unit,
                        # What the unit's region holds: each region has its own ARN.
                        acm_arn=arns.get(target_region(deployer)) or cert.acm_arn,
                        acm_strategy=strategy or "reimport",
                    )
                )
                if isinstance(deployer, SupportsPlan)
                else None
            )
            current_serial = current.current_serial if current else ""
            plan.append(
                {
                    "wave": number,
                    "target": unit.target,
                    "type": unit.target_type,
                    "unit": unit.unit,
                    "acm_strategy": strategy,
                    "current_serial": current_serial or None,
                    "current_not_after": (current.current_not_after if current else "") or None,
                    "new_serial": facts.serial,
                    "new_not_after": facts.not_after.isoformat().replace("+00:00", "Z"),
                    "change": "none"
                    if current_serial == facts.serial
                    else (current.description if current else "deploy"),
                }
            )
    return {"name": name, "revision": rev.number, "steps": plan}


def deploy_certificate(
    rt: Runtime, name: str, only: list[str] | None = None, canary: str | None = None
) -> tuple[list[str], list[str]]:
    """Roll the active revision out to its targets (or ``only`` these), verified, reversible.

    Returns the targets and notes on what was cleaned up afterwards (remove_old). Bad
    input (an unknown target or canary, a quota) is refused before anything is switched,
    and leaves no audit event: nothing happened. A probe nothing answers is refused
    before anything is switched too, but as a failed (retryable) deploy: audited.
    """
    cert, rev, previous = _active(rt, name)
    targets = _targets(cert, only)
    work = Work(cert=cert, rev=rev, previous=previous)
    now = rt.clock.now()
    try:
        notes = roll_out_work(rt, work, targets, canary=canary, again=True)
    except InputError:
        raise
    except CertmanError as error:
        with rt.session() as session:
            session.add(cert)
            session.add(rev)  # the rolled-back units' records, the primary ARN as it is now
            append_event(
                session,
                now,
                "deploy.failed",
                name,
                revision=rev.number,
                targets=targets,
                error=error.message,
            )
            session.commit()
        raise
    with rt.session() as session:
        session.add(cert)
        session.add(rev)
        append_event(
            session,
            rt.clock.now(),
            "certificate.deploy",
            name,
            revision=rev.number,
            targets=targets,
            acm_arn=cert.acm_arn,
            **({"cleaned_up": notes} if notes else {}),
        )
        session.commit()
    return targets, notes


@dataclass(frozen=True, kw_only=True)
class AcmImport:
    """What `certman acm import` did: the revision now in ACM, where, and any ARN it replaced."""

    name: str
    revision: int
    target: str
    region: str
    arn: str | None  # the certificate's acm_arn: the [aws] region's ARN
    replaced_arn: str | None = None  # deleted outside certman; the import made a new one

    @property
    def where(self) -> str:
        """Where the revision went, for the operator: the ARN when the row keeps this
        region's; a target in another region keeps its own in its deploy state."""
        from certman.aws.clients import region_of

        if self.arn and region_of(self.arn) == self.region:
            return f"as {self.arn}"
        return f"in {self.region}"


def import_to_acm(
    rt: Runtime,
    name: str,
    target: str | None = None,
    *,
    notice: Callable[[str], None] = lambda message: None,
) -> AcmImport:
    """Import (or re-import to its ARN) the active revision through an acm target.

    ``target`` defaults to the certificate's first acm target. An ARN deleted outside
    certman is forgotten first (asking by hand is the request for a new ARN, DESIGN.md
    rule 3), and ``notice`` is told so before the import runs; only the target's own region
    can say an ARN is gone.
    """
    from certman.deploy.rollout import target_region

    with rt.session() as session:
        cert = get_certificate(session, name)
    chosen = target
    if chosen is None:
        bound = targets_of(cert)
        acm_targets = [t for t in bound if rt.config.targets.get(t, {}).get("type") == "acm"]
        if not acm_targets:
            raise ValidationError(
                f"Certificate {name!r} has no acm target; name one with --target "
                '(an [targets.NAME] with type = "acm").'
            )
        chosen = acm_targets[0]
    elif rt.config.targets.get(chosen, {}).get("type") != "acm":
        raise ValidationError(f"Target {chosen!r} is not an acm target.")
    old_arn = cert.acm_arn
    deployer = rt.deployer(chosen)
    region = target_region(deployer) or rt.aws.region
    replaced = False
    if old_arn and isinstance(deployer, PublishesArn) and not deployer.exists(old_arn):
        replaced = True
        forget_acm_arn(rt, name, old_arn)
        notice(f"{old_arn} no longer exists in ACM; importing under a new ARN.")
    deploy_certificate(rt, name, [chosen])
    with rt.session() as session:
        cert = get_certificate(session, name)
    return AcmImport(
        name=name,
        revision=cert.current_revision,
        target=chosen,
        region=region,
        arn=cert.acm_arn,
        replaced_arn=old_arn if replaced and cert.acm_arn != old_arn else None,
    )


def forget_acm_arn(rt: Runtime, name: str, arn: str) -> None:
    """Drop an ARN that no longer exists from a certificate (before importing it anew)."""
    now = rt.clock.now()
    with rt.session() as session:
        row = get_certificate(session, name)
        if row.acm_arn != arn:
            return
        row.acm_arn = None
        row.drift = None
        row.updated_at = now
        session.add(row)
        append_event(session, now, "acm.arn_forgotten", name, acm_arn=arn)
        session.commit()
