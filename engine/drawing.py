"""The pictures the engine draws: a definition, one instance over it, where all its instances
are, or two of its versions in one (the diagrams package does the drawing; this says what goes
over it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from statemachines import Definition

from .records import HistoryEntry

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
    **options: Any,
) -> bytes:
    """`definition` coloured by how many instances are in each state and how often each
    transition was taken."""
    import diagrams

    overlay = diagrams.HeatOverlay(counts=counts, edges=edges)
    return picture(definition, format, overlay=overlay, **options)


def diff_picture(
    old: Definition, new: Definition, counts: dict[str, int], format: str, **options: Any
) -> bytes:
    """Version `old` against version `new` in one picture, with how many instances of `old`
    are in each state (`options`: those of `diagrams.diff_diagram`)."""
    import diagrams

    data: bytes = diagrams.diff_diagram(old, new, counts, format, **options)
    return data
