"""A migration plan as a value: which running instances of a definition move from one version
to another and how (each instance's class), printed for people (`summary`) and serialised
for tools and for applying later (`to_json`, `from_json`).

The classes are decided in `migration.py`; the engine makes the plan and applies it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import InvalidInput
from .replay import Divergence

SHOWN_PER_CLASS = 20  # instances a summary lists for each class that stays behind
MAX_SELECTED_IDS = 10_000


class MigrationClass(StrEnum):
    """What a migration does with one running instance."""

    SAFE = "safe"  # its history replays through the new version to the same instance
    MAPPED = "mapped"  # the state map moves it
    DIVERGENT = "divergent"  # the new version would have taken another path: it stays
    IMPOSSIBLE = "impossible"  # a state it is in has no counterpart: it stays


MOVING = (MigrationClass.SAFE, MigrationClass.MAPPED)
CLASS_NOTES = {
    MigrationClass.SAFE: "its history replays through the new version: moved as it is",
    MigrationClass.MAPPED: "moved by the state map: the mapped states entered afresh",
    MigrationClass.DIVERGENT: "stays: the new version would have taken another path",
    MigrationClass.IMPOSSIBLE: "stays: a state it is in is gone and the map does not name it",
}


@dataclass(frozen=True)
class PlanFilter:
    """Which running instances a plan takes (every one when nothing is given): those with an
    active state at or inside `state` (a full path), whose business key starts with
    `key_prefix`, whose id is among `ids`; all the filters given must hold."""

    state: str | None = None
    key_prefix: str | None = None
    ids: tuple[str, ...] | None = None

    @classmethod
    def of(cls, where: PlanFilter | Mapping[str, Any] | None) -> PlanFilter:
        """A PlanFilter from itself, None (everything) or a mapping of the filters (its JSON
        form); InvalidInput for an unknown filter or a value of the wrong kind."""
        if where is None:
            return cls()
        if isinstance(where, PlanFilter):
            return where
        if not isinstance(where, Mapping):
            raise InvalidInput("where must be an object of filters: state, key_prefix, ids")
        unknown = sorted(set(where) - {"state", "key_prefix", "ids"})
        if unknown:
            raise InvalidInput(f"unknown filter {unknown[0]!r}: where takes state, key_prefix, ids")
        state, prefix, ids = where.get("state"), where.get("key_prefix"), where.get("ids")
        for name, value in (("state", state), ("key_prefix", prefix)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(f"where.{name} must be a non-empty string")
        if ids is not None:
            if isinstance(ids, str) or not isinstance(ids, Sequence):
                raise InvalidInput("where.ids must be a list of instance ids")
            if len(ids) > MAX_SELECTED_IDS or not all(isinstance(one, str) for one in ids):
                raise InvalidInput(f"where.ids must be at most {MAX_SELECTED_IDS} ids (strings)")
            ids = tuple(ids)
        return cls(state, prefix, ids)

    @functools.cached_property
    def _chosen(self) -> frozenset[str] | None:
        return None if self.ids is None else frozenset(self.ids)

    def matches(self, instance_id: str, key: str | None, active: Sequence[str]) -> bool:
        """Whether an instance with this id, business key and active states is selected."""
        chosen = self._chosen
        if chosen is not None and instance_id not in chosen:
            return False
        if self.key_prefix is not None and not (key or "").startswith(self.key_prefix):
            return False
        if self.state is not None:
            inside = self.state + "."
            return any(path == self.state or path.startswith(inside) for path in active)
        return True

    def to_json(self) -> dict[str, Any]:
        """The filters given (an empty object: every running instance)."""
        found: dict[str, Any] = {"state": self.state, "key_prefix": self.key_prefix}
        found["ids"] = None if self.ids is None else list(self.ids)
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class PlannedInstance:
    """One instance in a plan: its id, business key and revision when planned, its class,
    its top-level `state` and active atomic `states` then, the new version's states a mapped
    one enters (`targets`), the first diverging entry of a divergent one, and why, in a line."""

    id: str
    key: str | None
    revision: int
    kind: MigrationClass
    state: str
    states: tuple[str, ...]
    targets: tuple[str, ...] = ()
    divergence: Divergence | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "revision": self.revision,
            "class": str(self.kind),
            "state": self.state,
            "states": list(self.states),
            "targets": list(self.targets),
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PlannedInstance:
        found = value.get("divergence")
        divergence = None
        if found is not None:
            divergence = Divergence(
                int(found["seq"]), dict(found["recorded"]), found.get("replayed"), found["reason"]
            )
        return cls(
            id=_text(value["id"], "id"),
            key=value.get("key"),
            revision=int(value["revision"]),
            kind=MigrationClass(value["class"]),
            state=str(value.get("state", "")),
            states=tuple(str(path) for path in value.get("states", ())),
            targets=tuple(str(path) for path in value.get("targets", ())),
            divergence=divergence,
            reason=str(value.get("reason", "")),
        )


@dataclass(frozen=True)
class MigrationPlan:
    """What moving the running instances of `definition` from `from_version` to `to_version`
    would do, decided without writing anything: each selected instance with its class.
    `Engine.migrate` applies it (and checks each instance again as it moves it)."""

    id: str
    definition: str
    from_version: int
    to_version: int
    planned_at: datetime
    instances: tuple[PlannedInstance, ...] = ()
    state_map: tuple[tuple[str, str], ...] = ()
    where: PlanFilter = field(default_factory=PlanFilter)

    def of(self, kind: MigrationClass | str) -> list[PlannedInstance]:
        """The planned instances of class `kind` ("safe", ...), in plan order (oldest first)."""
        return [one for one in self.instances if one.kind == kind]

    @property
    def moving(self) -> list[PlannedInstance]:
        """The instances the plan moves: the safe and the mapped."""
        return [one for one in self.instances if one.kind in MOVING]

    def counts(self) -> dict[str, int]:
        """How many instances each class has (every class named, zero included)."""
        counts = {str(kind): 0 for kind in MigrationClass}
        for one in self.instances:
            counts[str(one.kind)] += 1
        return counts

    def by_state(self) -> dict[str, dict[str, int]]:
        """For each active atomic state of the old version (a full path), how many of the
        instances in it are of each class; an instance in a parallel state counts in each
        of its states. States in document order of appearance, classes all named."""
        table: dict[str, dict[str, int]] = {}
        for one in self.instances:
            for path in one.states or (one.state,):
                row = table.setdefault(path, {str(kind): 0 for kind in MigrationClass})
                row[str(one.kind)] += 1
        return dict(sorted(table.items()))

    def summary(self) -> str:
        """The plan for people: counts per class and per state, the state map, and the
        instances that stay behind with why (at most SHOWN_PER_CLASS of each class)."""
        counts = self.counts()
        lines = [
            f"{self.definition}: version {self.from_version} -> {self.to_version}, "
            f"{len(self.instances)} running instance{'s' * (len(self.instances) != 1)} "
            f"(plan {self.id})"
        ]
        filters = ", ".join(f"{name}={value}" for name, value in self.where.to_json().items())
        if filters:
            lines.append(f"selected by {filters}")
        for kind in MigrationClass:
            lines.append(f"  {kind:<11} {counts[kind]:>6}  {CLASS_NOTES[kind]}")
        if self.state_map:
            mapped = ", ".join(f"{old} -> {new}" for old, new in self.state_map)
            lines.append(f"state map: {mapped}")
        table = self.by_state()
        if table:
            width = max(len("state"), *(len(path) for path in table))
            heads = "".join(f"{kind:>12}" for kind in MigrationClass)
            lines.append(f"by state (version {self.from_version}):")
            lines.append(f"  {'state':<{width}}{heads}")
            for path, row in table.items():
                cells = "".join(f"{row[kind]:>12}" for kind in MigrationClass)
                lines.append(f"  {path:<{width}}{cells}")
        for kind in (MigrationClass.DIVERGENT, MigrationClass.IMPOSSIBLE):
            staying = self.of(kind)
            if not staying:
                continue
            lines.append(f"{kind} instances:")
            for one in staying[:SHOWN_PER_CLASS]:
                lines.append(f"  {one.id}  {one.reason}")
            if len(staying) > SHOWN_PER_CLASS:
                more = len(staying) - SHOWN_PER_CLASS
                lines.append(f"  ... and {more} more (the JSON form lists every one)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping with everything needed to apply the plan; `from_json` gives
        the plan back. `counts` and `states` are for reading: `from_json` ignores them."""
        return {
            "plan": self.id,
            "definition": self.definition,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "planned_at": self.planned_at.isoformat(),
            "state_map": dict(self.state_map),
            "where": self.where.to_json(),
            "counts": self.counts(),
            "states": self.by_state(),
            "instances": [one.to_json() for one in self.instances],
        }

    @classmethod
    def from_json(cls, value: Any) -> MigrationPlan:
        """The plan `to_json` gave; InvalidInput, saying what is wrong, for anything else."""
        if not isinstance(value, Mapping):
            raise InvalidInput("a migration plan is a JSON object (as `to_json` writes it)")
        try:
            state_map = value.get("state_map") or {}
            instances = value.get("instances")
            if not isinstance(state_map, Mapping) or not isinstance(instances, list):
                raise TypeError("state_map must be an object and instances a list")
            return cls(
                id=_text(value["plan"], "plan"),
                definition=_text(value["definition"], "definition"),
                from_version=_version(value["from_version"], "from_version"),
                to_version=_version(value["to_version"], "to_version"),
                planned_at=datetime.fromisoformat(str(value["planned_at"])),
                instances=tuple(PlannedInstance.from_json(one) for one in instances),
                state_map=tuple((str(old), str(new)) for old, new in state_map.items()),
                where=PlanFilter.of(value.get("where")),
            )
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InvalidInput(f"not a migration plan: {problem}") from None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _version(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a version number (1 or more)")
    return value
