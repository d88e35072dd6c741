"""The deployers' contract (ACM, ELBv2 listeners, files + reload): deploy, verify, roll
back, each unit of a target on its own.

Each operation takes one request dataclass and returns one response dataclass; optional
capabilities are separate small protocols, asked with ``supports`` (certman.contracts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, kw_only=True)
class DeployRequest:
    """One revision to roll out to one unit of a target (a listener; or the whole target).

    ``private_key_pem`` lives only in memory. ``previous_state`` is what an earlier,
    interrupted attempt at the same unit recorded. ``replaces_acm_arn`` (acm_strategy
    "new-arn"): the ARN ``acm_arn`` takes the place of on this unit.
    """

    name: str
    revision: int
    certificate_pem: bytes
    chain_pem: bytes
    private_key_pem: bytes
    unit: str = ""
    acm_arn: str | None = None
    previous_state: Mapping[str, str] = field(default_factory=dict)
    replaces_acm_arn: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeployResponse:
    """``state`` is what verify and rollback need later (ARN, listener, serial); no secrets."""

    changed: bool
    state: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class VerifyRequest:
    name: str
    revision: int
    certificate_pem: bytes
    unit: str = ""
    state: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class VerifyResponse:
    ok: bool
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Material:
    """A revision's certificate, chain and key (key in memory only): what a rollback restores."""

    revision: int
    certificate_pem: bytes
    chain_pem: bytes
    private_key_pem: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class RollbackRequest:
    """Undo ``deploy`` on one unit. ``previous`` is the revision to restore, when there is one."""

    name: str
    revision: int
    unit: str = ""
    state: Mapping[str, str] = field(default_factory=dict)
    previous: Material | None = None


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """``acm_arn`` is what the unit's region holds now; ``acm_strategy`` how a renewal reaches
    it ("reimport": the same ARN; "new-arn": a new ARN the unit is moved to)."""

    name: str
    certificate_pem: bytes
    unit: str = ""
    acm_arn: str | None = None
    acm_strategy: str = "reimport"


@dataclass(frozen=True, kw_only=True)
class PlanResponse:
    """What the unit serves now (serial, not_after; empty when unknown) and what would change."""

    current_serial: str = ""
    current_not_after: str = ""
    description: str = ""


@runtime_checkable
class Deployer(Protocol):
    target_type: str

    def deploy(self, request: DeployRequest) -> DeployResponse: ...

    def verify(self, request: VerifyRequest) -> VerifyResponse: ...

    def rollback(self, request: RollbackRequest) -> None:
        """Put the unit back as it was before ``deploy``; idempotent."""
        ...


@runtime_checkable
class SupportsUnits(Protocol):
    def units(self) -> list[str]:
        """The independently switched parts of the target (listeners), canary candidates first."""
        ...


@runtime_checkable
class SupportsPlan(Protocol):
    def plan(self, request: PlanRequest) -> PlanResponse:
        """What the unit serves now; never changes anything."""
        ...


@dataclass(frozen=True, kw_only=True)
class RolloutPrecheckRequest:
    """Asked of every target before a rollout switches anything (and before issuance).

    ``acm_arn`` is the certificate's ARN in the target's region when one is known;
    ``acm_in_rollout`` says whether an acm target of that region deploys first.
    ``probe``: also check that the target's probe endpoint answers at all (not on a first
    issuance, where no server may be running yet).
    """

    name: str
    acm_arn: str | None = None
    acm_in_rollout: bool = False
    probe: bool = False
    server_name: str | None = None


@runtime_checkable
class SupportsRolloutPrecheck(Protocol):
    def precheck_rollout(self, request: RolloutPrecheckRequest) -> None:
        """Raise InputError for what would make the rollout fail half-way; change nothing."""
        ...


@dataclass(frozen=True, kw_only=True)
class CleanupRequest:
    """``state`` is what this rollout recorded for the unit; ``earlier`` what the unit held
    before it (the previous revision's rollout, or an earlier run of this one)."""

    name: str
    revision: int
    unit: str = ""
    state: Mapping[str, str] = field(default_factory=dict)
    earlier: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class SupportsCleanup(Protocol):
    def clean_up(self, request: CleanupRequest) -> str:
        """After every unit of the rollout verified: drop what only the earlier state needed
        (a replaced ARN in an SNI list). Idempotent; returns what it did ("" for nothing).
        Never called on a failed rollout, and its failure does not undo the rollout."""
        ...


# SupportsWaves and SupportsRegion are settings, not methods: check them with isinstance
# (certman.contracts.supports answers only method protocols).


@runtime_checkable
class SupportsWaves(Protocol):
    """A target of several units (listeners) that go out after the canary in waves."""

    wave_size: int  # units switched together, at least 1


@runtime_checkable
class SupportsRegion(Protocol):
    """A target in one AWS region: the certificate's ACM ARN it uses is that region's."""

    region: str  # "" when the target follows [aws] region


@runtime_checkable
class PublishesArn(Protocol):
    """A target that publishes the certificate under an ARN the other targets of its region
    use (ACM): its units deploy first in a rollout, clean up last, and the ARN it records
    goes on to the other units of its region as ``DeployRequest.acm_arn``.

    Its deploy state records ``acm_arn`` (the ARN), ``created`` ("yes" for an ARN made for
    this revision) and, with ``strategy`` "new-arn", ``strategy`` and ``replaces`` (the ARN
    the new one takes the place of on the other units).
    """

    strategy: str  # how a renewal reaches the ARN: "reimport" (the same ARN) or "new-arn"

    def exists(self, arn: str) -> bool:
        """Whether the target still holds ``arn``: False only when this target's own region
        says it is gone (deleted outside certman); an ARN of another region is never "gone"."""
        ...


@runtime_checkable
class SupportsForget(Protocol):
    def forget(self, name: str, revision: int) -> None:
        """The rollout of ``revision`` is over (done or rolled back): drop what the target
        kept in memory for a rollback of it."""
        ...
