"""The pictures the engine draws: a definition, one instance over it, where all its instances
are, or two of its versions in one (the diagrams package does the drawing; this says what goes
over it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from statemachines import CompiledMachine, Definition

from . import travel
from .catalog import Version
from .records import HistoryEntry
from .rows import InstanceRow
from .store import Store
from .tables import instances_t

MOVES = ("start", "event", "task", "timer", "always", "call")  # history kinds that move an instance


def nested(definition: Definition) -> bool:
    """Whether `definition` has compound states: its heat map counts the active atomic
    states (a flat one keeps counting top-level states, as it always has)."""
    return any(state.region is not None for state in definition.walk())


def picture(definition: Definition, format: str, **options: Any) -> bytes:
    """`definition` drawn (with `overlay=` over it, among the `diagrams.render` options)."""
    import diagrams

    data: bytes = diagrams.render(definition, format=format, **options)
    return data


def instance_picture(
    definition: Definition,
    active: list[str],
    status: str,
    history: Iterable[HistoryEntry],
    format: str,
    **options: Any,
) -> bytes:
    """`definition` with the active states, the status and the path of the history drawn."""
    import diagrams

    path = [
        (entry.event, entry.from_state, entry.to_state)
        for entry in history
        if entry.kind in MOVES and entry.to_state
    ]
    overlay = diagrams.InstanceOverlay(active=active, status=status, path=path)
    return picture(definition, format, overlay=overlay, **options)


def heat_picture(
    definition: Definition,
    counts: dict[str, int],
    edges: dict[tuple[str, str | None, str], int],
    format: str,
    *,
    ended: dict[str, int] | None = None,
    unfinished: int | None = None,
    **options: Any,
) -> bytes:
    """`definition` coloured by how many instances are in each state and how often each
    transition was taken; `ended` says where the finished ones ended, `unfinished` how many
    instances `counts` stands for (see `diagrams.HeatOverlay`)."""
    import diagrams

    overlay = diagrams.HeatOverlay(
        counts=counts, edges=edges, ended=ended or {}, unfinished=unfinished
    )
    return picture(definition, format, overlay=overlay, **options)


def ended_by_state(store: Store, name: str) -> dict[str, int]:
    """How many finished instances of `name` ended in each (top-level) state."""
    query = (
        sa.select(instances_t.c.state, sa.func.count())
        .where(
            instances_t.c.definition == name,
            instances_t.c.status.in_(("succeeded", "failed", "cancelled")),
        )
        .group_by(instances_t.c.state)
    )
    with store.core() as conn:
        return {str(state): int(count) for state, count in conn.execute(query)}


class Pictures:
    """The engine's drawings (a part of `Engine`, kept here with what they draw)."""

    store: Store

    def _row(self, instance_id: str) -> InstanceRow:
        raise NotImplementedError

    def definition(self, name: str, version: int | None = None) -> Definition:
        raise NotImplementedError

    def _version(self, name: str, version: int | None) -> Version:
        raise NotImplementedError

    def _machine_of(self, name: str, version: int) -> CompiledMachine:
        """The compiled machine of deployed version `version` of `name`."""
        return self._version(name, version).machine

    def diagram(
        self,
        instance_id: str,
        format: str = "svg",
        *,
        fallback: bool = False,
        depth: int | None = None,
        at: int | None = None,
    ) -> bytes:
        """The instance's definition drawn with its current state and the path it took (with
        `at`, as `get(at=...)` sees it then). Too large to lay out: DiagramTooLarge, or with
        `fallback` an SVG that says so (see `diagrams.render`, also for `depth`)."""
        row = self._row(instance_id)
        version, active, status = row.version, list(row.active or []), row.status
        if at is None:
            history = self.store.history(row.id)
        else:
            point, history = travel.looked_back(self.store, row, at, self._machine_of)
            version, active, status = point.version or version, point.active, point.status
        definition = self._version(row.definition, version).definition
        return instance_picture(
            definition, active, status, history, format, fallback=fallback, depth=depth
        )

    def heat_diagram(
        self,
        name: str,
        format: str = "svg",
        *,
        fallback: bool = False,
        depth: int | None = None,
    ) -> bytes:
        """The definition `name` coloured by where its instances are and the paths taken;
        the picture is reused while the definition and the counts stay the same."""
        definition, store = self.definition(name), self.store
        by_state = store.count_by_state(name)  # each unfinished instance once, at the top
        counts = store.count_by_active(name) if nested(definition) else by_state
        edges = store.transition_counts(name)
        return heat_picture(
            definition,
            counts,
            edges,
            format,
            ended=ended_by_state(store, name),
            unfinished=sum(by_state.values()),
            fallback=fallback,
            depth=depth,
        )

    def definition_diagram(
        self,
        name: str,
        format: str = "svg",
        version: int | None = None,
        *,
        fallback: bool = False,
        depth: int | None = None,
    ) -> bytes:
        """The deployed definition `name` drawn on its own."""
        definition = self.definition(name, version)
        return picture(definition, format, fallback=fallback, depth=depth)


def diff_picture(
    old: Definition, new: Definition, counts: dict[str, int], format: str, **options: Any
) -> bytes:
    """Version `old` against version `new` in one picture, with how many instances of `old`
    are in each state (`options`: those of `diagrams.diff_diagram`)."""
    import diagrams

    data: bytes = diagrams.diff_diagram(old, new, counts, format, **options)
    return data
