"""Per-unit deploy records: what a rollout recorded for each unit, and their one serialisation.

A revision's ``deploy_state`` column holds a JSON object keyed by unit (``target`` or
``target|unit``); each value is the deployer's own state (strings) plus the rollout's
marks ``changed`` and ``verified`` ("yes"/"no"). Records written before ``changed``
existed have none, and count as changed (a rollback of them is safe).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

_MARKS = ("changed", "verified")


@dataclass(frozen=True, kw_only=True)
class UnitRecord:
    """One unit's record: the deployer's state and whether the rollout changed and verified it."""

    state: Mapping[str, str] = field(default_factory=dict)  # the deployer's, no secrets
    changed: bool | None = None  # None: recorded before "changed" existed (counts as changed)
    verified: bool = False

    @property
    def was_changed(self) -> bool:
        """Whether a rollback has something to undo on this unit."""
        return self.changed is not False

    @property
    def arn(self) -> str:
        """The ARN the unit recorded ("" for none)."""
        return self.state.get("acm_arn", "")

    @property
    def new_arn(self) -> bool:
        """A publisher's record under acm_strategy "new-arn" (a new ARN per revision)."""
        return self.state.get("strategy") == "new-arn"

    @property
    def replaces(self) -> str:
        """new-arn: the ARN this one takes the place of on the other units."""
        return self.state.get("replaces", "")

    @property
    def created(self) -> bool:
        """A publisher's record of an ARN made for this very revision."""
        return self.state.get("created") == "yes"

    def as_verified(self) -> UnitRecord:
        return replace(self, verified=True)

    def as_json(self) -> dict[str, str]:
        """The JSON object stored for the unit (and what deployers are handed back)."""
        marks = {} if self.changed is None else {"changed": "yes" if self.changed else "no"}
        return {**self.state, **marks, **({"verified": "yes"} if self.verified else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> UnitRecord:
        changed = data.get("changed")
        return cls(
            state={k: v for k, v in data.items() if k not in _MARKS},
            changed=None if changed is None else changed == "yes",
            verified=data.get("verified") == "yes",
        )


UnitRecords = dict[str, UnitRecord]


def load_records(text: str | None) -> UnitRecords:
    """A revision's ``deploy_state`` column, parsed (empty for none)."""
    return {key: UnitRecord.from_json(value) for key, value in json.loads(text or "{}").items()}


def dump_records(records: Mapping[str, UnitRecord]) -> str | None:
    """The ``deploy_state`` column for ``records`` (None for none)."""
    if not records:
        return None
    return json.dumps({key: r.as_json() for key, r in records.items()}, sort_keys=True)
