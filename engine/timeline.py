"""An instance's whole history as the points a person steps through: each commit, the state
and status it left, and what it changed in the context.

One replay of the history (`travel.replayed`) gives every point at once; a step-through (the
dashboard's, `turnout timeline`) reads this instead of rebuilding the instance once per step.
A point's context is told as its difference from the point before (the first point's from an
empty context), so the whole context at any point is the differences up to it, applied in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statemachines.replay import Divergence, Point

from . import travel
from .rows import InstanceRow
from .store import Store


@dataclass(frozen=True)
class ContextChanges:
    """How a context differs from the one before, by top-level key: the keys `added` (with
    their values), `removed` (with the values they had) and `changed` (key → (old, new))."""

    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> ContextChanges:
        return cls(
            added={key: value for key, value in after.items() if key not in before},
            removed={key: value for key, value in before.items() if key not in after},
            changed={
                key: (before[key], value)
                for key, value in after.items()
                if key in before and before[key] != value
            },
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": {key: {"old": old, "new": new} for key, (old, new) in self.changed.items()},
        }


@dataclass(frozen=True)
class TimelinePoint:
    """One commit of the instance's history: the entries `first`..`last` it wrote at `at`,
    the revision, version, state, active states and status it left, and its context changes."""

    first: int
    last: int
    at: datetime
    revision: int
    version: int | None
    state: str
    active: list[str]
    status: str
    changes: ContextChanges

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "at": self.at.isoformat().replace("+00:00", "Z"),  # as history entries say it
            "revision": self.revision,
            "version": self.version,
            "state": self.state,
            "active": list(self.active),
            "status": self.status,
            "context": self.changes.to_json(),
        }


@dataclass(frozen=True)
class Timeline:
    """Every point of an instance's history, oldest first, over its `entries` history entries.

    `divergence` is None when the whole history replayed; else replay stopped there (the rows
    were changed by hand, a version is gone) and `points` end before it."""

    instance_id: str
    entries: int
    points: list[TimelinePoint]
    divergence: Divergence | None = None

    @property
    def complete(self) -> bool:
        return self.divergence is None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance_id,
            "entries": self.entries,
            "complete": self.complete,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "points": [point.to_json() for point in self.points],
        }


def timeline_of(store: Store, row: InstanceRow, machines: travel.Machines) -> Timeline:
    """The timeline of instance `row`, from one replay of its history."""
    history = store.history(row.id, row.definition)
    found = travel.replayed(row, history, machines)
    return Timeline(row.id, row.history_seq, points_of(found.points), found.divergence)


def points_of(points: list[Point]) -> list[TimelinePoint]:
    """The replayed points as a person steps through them, each with its context changes."""
    made: list[TimelinePoint] = []
    before: dict[str, Any] = {}
    for point in points:
        made.append(
            TimelinePoint(
                first=point.first,
                last=point.last,
                at=point.at,
                revision=point.revision,
                version=point.version,
                state=point.state,
                active=point.active,
                status=point.status,
                changes=ContextChanges.between(before, point.context),
            )
        )
        before = point.context
    return made
