"""What applying a migration plan did, instance by instance (`MigrationResult`): moved, skipped
(already moved, finished, or on another version since), stayed (checked again when its
turn came, it could no longer move) or untouched (the plan left it where it is)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from statemachines.migration_plan import MigrationClass
from statemachines.replay import Divergence

SHOWN = 20  # instances a summary lists for each outcome but `migrated`


class Outcome(StrEnum):
    """What `Engine.migrate` did with one instance of the plan."""

    MIGRATED = "migrated"  # moved to the new version, with a `migrated` history entry
    SKIPPED = "skipped"  # nothing to do: already moved, finished, or on another version
    STAYED = "stayed"  # it changed since the plan, and can no longer move: left as it is
    UNTOUCHED = "untouched"  # divergent or impossible in the plan: not tried


@dataclass(frozen=True)
class MigratedInstance:
    """One instance of the plan and what became of it: its class in the plan (`planned`)
    and when its turn came (`kind`, None when skipped before it was looked at), its
    revision after a move, whether it had changed since the plan (`moved_on`), and why."""

    id: str
    outcome: Outcome
    planned: MigrationClass
    kind: MigrationClass | None = None
    revision: int | None = None
    moved_on: bool = False
    reason: str = ""
    divergence: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": str(self.outcome),
            "planned": str(self.planned),
            "class": None if self.kind is None else str(self.kind),
            "revision": self.revision,
            "changed_since_plan": self.moved_on,
            "reason": self.reason,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
        }


@dataclass(frozen=True)
class MigrationResult:
    """What `Engine.migrate(plan)` did: every instance of the plan with its outcome."""

    plan: str
    definition: str
    from_version: int
    to_version: int
    instances: tuple[MigratedInstance, ...] = ()

    def of(self, outcome: Outcome | str) -> list[MigratedInstance]:
        """The instances with `outcome` ("migrated", ...), in plan order."""
        return [one for one in self.instances if one.outcome == outcome]

    @property
    def migrated(self) -> list[MigratedInstance]:
        return self.of(Outcome.MIGRATED)

    def counts(self) -> dict[str, int]:
        """How many instances had each outcome (every outcome named, zero included)."""
        counts = {str(outcome): 0 for outcome in Outcome}
        for one in self.instances:
            counts[str(one.outcome)] += 1
        return counts

    def summary(self) -> str:
        counts = self.counts()
        moved = self.migrated
        safe = sum(1 for one in moved if one.kind == MigrationClass.SAFE)
        lines = [
            f"{self.definition}: version {self.from_version} -> {self.to_version} "
            f"(plan {self.plan})",
            f"  migrated   {counts['migrated']:>6}  ({safe} safe, {len(moved) - safe} mapped)",
            f"  skipped    {counts['skipped']:>6}  already moved, finished, or moved on since",
            f"  stayed     {counts['stayed']:>6}  changed since the plan and can no longer move",
            f"  untouched  {counts['untouched']:>6}  divergent or impossible in the plan",
        ]
        for outcome in (Outcome.SKIPPED, Outcome.STAYED):
            listed = self.of(outcome)
            if listed:
                lines.append(f"{outcome} instances:")
                lines.extend(f"  {one.id}  {one.reason}" for one in listed[:SHOWN])
                if len(listed) > SHOWN:
                    lines.append(f"  ... and {len(listed) - SHOWN} more (the JSON form lists all)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "definition": self.definition,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "counts": self.counts(),
            "instances": [one.to_json() for one in self.instances],
        }
