"""The rollout executor on its own: handed material, deployers and a checkpoint, it orders
units by capability, records typed per-unit state, and rolls back what it switched."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization

from certman.contracts.deployer import (
    Deployer,
    DeployRequest,
    DeployResponse,
    Material,
    RollbackRequest,
    VerifyRequest,
    VerifyResponse,
)
from certman.deploy.records import UnitRecord, dump_records, load_records
from certman.deploy.rollout import Rollout, RolloutRecord, roll_out, waves
from certman.errors import DeployError, ValidationError
from tests.selfsigned import self_signed

CERT, KEY = self_signed("www.example.test")
CERT_PEM = CERT.public_bytes(serialization.Encoding.PEM)


@dataclass
class Publisher:
    """Publishes the certificate under an ARN (the PublishesArn capability), whatever its type."""

    log: list[str]
    target_type: str = "vault-arn"  # not "acm": the capability decides, not the name
    strategy: str = "reimport"
    region: str = "us-east-1"

    def exists(self, arn: str) -> bool:
        return True

    def deploy(self, request: DeployRequest) -> DeployResponse:
        self.log.append(f"publish {request.revision}")
        arn = "arn:aws:acm:us-east-1:123456789012:certificate/new"
        return DeployResponse(changed=True, state={"acm_arn": arn, "created": "no"})

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        return VerifyResponse(ok=True)

    def rollback(self, request: RollbackRequest) -> None:
        self.log.append("unpublish")


@dataclass
class Listener:
    log: list[str]
    ok: bool = True
    target_type: str = "listener"
    region: str = "us-east-1"
    seen: list[DeployRequest] = field(default_factory=list)
    restored: list[Material | None] = field(default_factory=list)

    def deploy(self, request: DeployRequest) -> DeployResponse:
        self.log.append(f"listen {request.acm_arn}")
        self.seen.append(request)
        return DeployResponse(
            changed=True, state={"listener": "l1", "acm_arn": request.acm_arn or ""}
        )

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        return VerifyResponse(ok=self.ok, message="serves another serial")

    def rollback(self, request: RollbackRequest) -> None:
        self.log.append("unlisten")
        self.restored.append(request.previous)


PREVIOUS = Material(revision=1, certificate_pem=b"old", chain_pem=b"", private_key_pem=b"k")


def rollout(deployers: Mapping[str, Deployer], **extra: object) -> Rollout:
    settings: dict[str, object] = {
        "name": "www",
        "revision": 2,
        "certificate_pem": CERT_PEM,
        "chain_pem": b"",
        "private_key_pem": lambda: KEY,
        "previous": lambda: PREVIOUS,
        "deployers": deployers,
        "deployer_of": deployers.get,
        "previous_records": {},
        "primary_region": "us-east-1",
        "probe": False,
    }
    settings.update(extra)
    return Rollout(**settings)  # type: ignore[arg-type]


def fresh_record() -> RolloutRecord:
    return RolloutRecord(units={}, acm_arn=None)


def test_a_deployer_that_publishes_an_arn_goes_first_and_hands_it_to_the_listeners() -> None:
    log: list[str] = []
    listener = Listener(log)
    # Given listener first: the publisher's capability, not its type name, puts it first.
    deployers: dict[str, Deployer] = {"lb": listener, "cert": Publisher(log)}
    assert [[u.target for u in w] for w in waves(deployers)] == [["cert"], ["lb"]]
    record = fresh_record()
    roll_out(rollout(deployers, published=lambda: log.append("published")), record, lambda: None)
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/new"
    assert log == ["publish 2", "published", f"listen {arn}"]
    assert record.acm_arn == arn  # the primary region's ARN, for the certificate row


def test_each_switch_is_checkpointed_with_its_typed_record_before_the_next() -> None:
    log: list[str] = []
    deployers: dict[str, Deployer] = {"cert": Publisher(log), "lb": Listener(log)}
    record = fresh_record()
    seen: list[str | None] = []
    roll_out(rollout(deployers), record, lambda: seen.append(dump_records(record.units)))
    first = json.loads(seen[0] or "{}")
    assert first == {
        "cert": {
            "acm_arn": "arn:aws:acm:us-east-1:123456789012:certificate/new",
            "changed": "yes",
            "created": "no",
        }
    }
    assert record.units["cert"].verified and record.units["lb"].verified
    assert json.loads(seen[-1] or "{}")["lb"]["verified"] == "yes"


def test_a_failed_verify_rolls_back_with_the_previous_material_and_forgets_the_records() -> None:
    log: list[str] = []
    listener = Listener(log, ok=False)
    deployers: dict[str, Deployer] = {"cert": Publisher(log), "lb": listener}
    record = fresh_record()
    with pytest.raises(DeployError, match="Target lb did not verify: serves another serial"):
        roll_out(rollout(deployers), record, lambda: None)
    assert log[-2:] == ["unlisten", "unpublish"]  # reverse order
    assert listener.restored == [PREVIOUS]
    assert record.units == {}  # the units hold what they held before


def test_a_resumed_rollout_skips_verified_units_and_never_unseals_for_a_failed_plan() -> None:
    log: list[str] = []
    deployers: dict[str, Deployer] = {"cert": Publisher(log), "lb": Listener(log)}
    record = fresh_record()
    record.acm_arn = "arn:aws:acm:us-east-1:1:certificate/x"  # the certificate row's
    record.units = load_records(
        json.dumps(
            {"cert": {"acm_arn": "arn:aws:acm:us-east-1:1:certificate/x", "verified": "yes"}}
        )
    )
    roll_out(rollout(deployers), record, lambda: None)
    assert log == ["listen arn:aws:acm:us-east-1:1:certificate/x"]

    def no_key() -> bytes:
        raise AssertionError("the key is unsealed only once the plan holds")

    with pytest.raises(ValidationError, match="--canary"):
        roll_out(
            rollout(deployers, canary="nope", private_key_pem=no_key), fresh_record(), lambda: None
        )


def test_deploy_records_read_and_write_the_stored_json_unchanged() -> None:
    stored = json.dumps(
        {
            "lb|l1": {"acm_arn": "a", "changed": "no", "listener": "l1", "verified": "yes"},
            # Written before "changed" existed: kept as it was, and counted as changed.
            "old": {"acm_arn": "b", "verified": "yes"},
        },
        sort_keys=True,
    )
    records = load_records(stored)
    assert records["lb|l1"] == UnitRecord(
        state={"acm_arn": "a", "listener": "l1"}, changed=False, verified=True
    )
    assert not records["lb|l1"].was_changed and records["old"].was_changed
    assert dump_records(records) == stored
    assert load_records(None) == {} and dump_records({}) is None


def test_the_executor_imports_nothing_of_the_lifecycle_or_the_runtime() -> None:
    code = (
        "import sys, certman.deploy.rollout; "
        "print(sorted(m for m in sys.modules if m.startswith('certman.service')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
