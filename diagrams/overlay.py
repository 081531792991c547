"""Overlays: an instance's current states and path, or a heat map of many instances.

Overlay data is plain input (state paths, counts, ordered steps), so drawing needs no engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import graphviz

from .dotsource import Styles
from .shapes import Drawing, Edge, small

Step = tuple[str | None, str | None, str | None]
STATUSES = ("running", "succeeded", "failed", "cancelled", "compensating")
ACTIVE_FILL, ACTIVE_LINE = "#ffd54f", "#b26a00"
VISITED_FILL = "#ffeaa6"
TAKEN = "#d9480f"
CLUSTER_TINTS = {"active": "#fff8e1", "visited": "#fffcf2"}
HEAT = ("#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913")  # dark text stays legible
END_MARKS = {
    "failed": ("✗ instance failed", "#c62828"),
    "cancelled": ("✗ instance cancelled", "#c62828"),
    "compensating": ("↶ compensating", "#8a4b08"),
    "succeeded": ("✓ instance succeeded", "#2e7d32"),
}


@dataclass(frozen=True)
class InstanceOverlay:
    """One instance over its definition.

    `active`: the active state paths; `status`: running, succeeded, failed, cancelled or
    compensating; `path`: the ordered (event, from_state, to_state) steps, the first being
    `(None, None, initial)` - the shape of `statemachines.simulate(...).path`.
    """

    active: Sequence[str]
    status: str = "running"
    path: Sequence[Step] = field(default_factory=tuple)

    @classmethod
    def from_history(
        cls, *, active: Iterable[str], status: str, path: Iterable[Sequence[str | None]]
    ) -> InstanceOverlay:
        """Build an overlay from an instance's active states, status and steps taken."""
        steps = tuple((step[0], step[1], step[2]) for step in path)
        return cls(active=tuple(active), status=status, path=steps)


@dataclass(frozen=True)
class HeatOverlay:
    """Many instances over one definition.

    `counts`: how many unfinished instances are in each state path now; `edges`: how often
    each (from_state, event, to_state) transition was taken (event None for eventless ones);
    `ended`: how many finished instances ended in each (final) state; `unfinished`: how many
    instances `counts` stands for, when the caller knows (an instance in a parallel or nested
    state is counted in several paths), else the top-level paths of `counts` are added up.
    The title says how many instances there are in all, finished ones included.
    """

    counts: dict[str, int] = field(default_factory=dict)
    edges: dict[tuple[str, str | None, str], int] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)
    unfinished: int | None = None

    @property
    def running(self) -> int:
        """How many instances have not finished."""
        if self.unfinished is not None:
            return self.unfinished
        return sum(count for state, count in self.counts.items() if "." not in state)

    @property
    def finished(self) -> int:
        """How many instances have finished."""
        return sum(self.ended.values())

    @property
    def title(self) -> str:
        """How many instances the map stands for: `12 instances (12 finished)`."""
        running, finished = self.running, self.finished
        total = running + finished
        text = f"{total:,} instance{'s' if total != 1 else ''}"
        if finished:
            text += (
                f" ({running:,} running, {finished:,} finished)" if running else " (all finished)"
            )
        return text


Overlay = InstanceOverlay | HeatOverlay


def overlay_styles(drawing: Drawing, overlay: Overlay | None) -> Styles:
    """The restyling that draws `overlay` over `drawing`."""
    if overlay is None:
        return Styles()
    if isinstance(overlay, HeatOverlay):
        return _heat(drawing, overlay)
    return _instance(drawing, overlay)


def find_edge(
    drawing: Drawing, source: str | None, event: str | None, target: str | None
) -> int | None:
    """The index of the edge a step (event, from, to) took, or None if none matches."""
    if target is None:
        return None
    if drawing.shown:  # collapsed boxes stand for the nodes inside them
        source = None if source is None else drawing.drawn(source)
        target = drawing.drawn(target)
    for number in drawing.by_ends.get((source, target), []):
        if _same_trigger(drawing.edges[number], event):
            return number
    return None


def find_internal(drawing: Drawing, state: str, event: str | None) -> int | None:
    """The index of the internal transition (one that stays in `state`) `event` took."""
    for number, inner in enumerate(drawing.internals):
        if inner.state == state and (
            event == inner.trigger
            or event in inner.also
            or (event is None and inner.trigger == "always")
        ):
            return number
    return None


def _order(numbers: list[int]) -> str:
    """Step numbers as a short list: `2, 5, 9`, cut after four."""
    return ", ".join(str(n) for n in numbers[:4]) + ("…" if len(numbers) > 4 else "")


def _same_trigger(edge: Edge, event: str | None) -> bool:
    if edge.kind == "initial":
        return event is None
    if event is None or event == "always":
        return edge.trigger == "always"
    return event == edge.trigger or event in edge.also


def _instance(drawing: Drawing, overlay: InstanceOverlay) -> Styles:
    styles = Styles()
    steps = list(overlay.path)
    visited: set[str] = set()
    taken: dict[int, list[int]] = {}
    stayed: dict[int, list[int]] = {}
    for number, (event, source, target) in enumerate(steps, 1):
        for state in (source, target):
            if state:
                visited.update(drawing.ancestors(state))
        edge = find_edge(drawing, source, event, target)
        if edge is not None:
            taken.setdefault(edge, []).append(number)
        elif source is not None and source == target:
            found = find_internal(drawing, drawing.drawn(source), event)
            if found is not None:
                stayed.setdefault(found, []).append(number)
    active = [state for state in overlay.active if state]
    if not active and steps and steps[-1][2]:
        active = [str(steps[-1][2])]
    current = {parent for state in active for parent in drawing.ancestors(state)}
    # Entering a parallel state enters each branch at its initial state: draw those arrows too.
    for number, arrow in enumerate(drawing.edges):
        if arrow.kind == "initial" and arrow.source is None and arrow.target in visited | current:
            if arrow.attrs.get("style") != "invis" and "." in arrow.target:
                taken.setdefault(number, [])
    for state in visited - current:
        _paint(drawing, styles, state, {"fillcolor": VISITED_FILL}, "visited")
    highlight = {"fillcolor": ACTIVE_FILL, "penwidth": "3", "color": ACTIVE_LINE}
    for state in current:
        _paint(drawing, styles, state, highlight, "active")
    for edge_number, numbers in taken.items():
        line = drawing.edges[edge_number]
        change = {
            "penwidth": "2.6",
            "color": TAKEN,
            "fontcolor": TAKEN,
            "class": line.attrs.get("class", "transition") + " taken",
        }
        if numbers:
            order = _order(numbers)
            change["label"] = graphviz.escape(f"({order}) {line.text}".strip())
        styles.edges[edge_number] = change
    for inner_number, numbers in stayed.items():
        inner = drawing.internals[inner_number]
        name = _drawn_name(drawing, inner.state)
        if name is not None:
            marked = small(f"({_order(numbers)}) {inner.text}", TAKEN, 10, bold=True)
            styles.replace.setdefault(name, {})[inner.line] = marked
    mark = END_MARKS.get(overlay.status)
    if mark is not None and overlay.status != "succeeded":
        # Once, on the state the instance is in (a parallel or compound state, not each of the
        # states inside it).
        outermost = {drawing.ancestors(state)[-1]: None for state in active}
        for state in outermost:
            name = _drawn_name(drawing, state)
            if name is not None:
                styles.lines.setdefault(name, []).append(small(mark[0], mark[1], 11))
                styles.nodes.setdefault(name, {})["color"] = mark[1]
    styles.graph["label"] = graphviz.escape(f"{drawing.name} · instance {overlay.status}")
    styles.graph["fontcolor"] = _status_colour(overlay.status)
    return styles


def _heat(drawing: Drawing, overlay: HeatOverlay) -> Styles:
    styles = Styles()
    counts: dict[str, int] = {}
    for state, count in overlay.counts.items():  # what a collapsed box stands for, summed
        counts[drawing.drawn(state)] = counts.get(drawing.drawn(state), 0) + count
    most = max(counts.values(), default=0)
    for state, count in counts.items():
        name = _drawn_name(drawing, state)
        if name is None or count <= 0:
            continue
        shade = HEAT[min(len(HEAT) - 1, 1 + (count * (len(HEAT) - 2)) // max(most, 1))]
        change = {"penwidth": "2.5", "class": _class(drawing, state) + " heat"}
        if state in drawing.clusters:
            change["color"] = HEAT[-2]  # a filled cluster would hide the states inside it
        else:
            change["fillcolor"] = shade
        styles.nodes[name] = change
        styles.lines.setdefault(name, []).append(
            small(f"{count} instance{'s' if count != 1 else ''} here", "#000000", 10)
        )
    busiest = max(overlay.edges.values(), default=0)
    for (source, event, target), count in overlay.edges.items():
        number = find_edge(drawing, source, event, target)
        if number is None or count <= 0:
            continue
        line = drawing.edges[number]
        width = 1 + 5 * count / max(busiest, 1)
        label = graphviz.escape(f"{line.text} ×{count}".strip())
        styles.edges[number] = {
            "penwidth": f"{width:.1f}",
            "label": label,
            "class": line.attrs.get("class", "transition") + " heat",
        }
    for state, count in overlay.ended.items():  # where finished instances ended: said, not hot
        name = _drawn_name(drawing, drawing.drawn(state))
        if name is not None and count > 0:
            styles.lines.setdefault(name, []).append(small(f"{count:,} ended here", "#1f3b63", 10))
            change = styles.nodes.setdefault(name, {})
            change["class"] = change.get("class", _class(drawing, drawing.drawn(state))) + " ended"
    styles.graph["label"] = graphviz.escape(f"{drawing.name} · {overlay.title}")
    return styles


def _paint(drawing: Drawing, styles: Styles, state: str, change: dict[str, str], tag: str) -> None:
    name = _drawn_name(drawing, state)
    if name is None:
        return
    if state in drawing.clusters:
        # A filled box would drown the states inside it: a pale tint and the border instead.
        change = {**change, "fillcolor": CLUSTER_TINTS[tag]}
    styles.nodes[name] = {
        **styles.nodes.get(name, {}),
        **change,
        "class": f"{_class(drawing, state)} {tag}",
    }


def _drawn_name(drawing: Drawing, state: str) -> str | None:
    if state in drawing.nodes:
        return drawing.nodes[state].name
    if state in drawing.clusters:
        return drawing.clusters[state].name
    return None


def _class(drawing: Drawing, state: str) -> str:
    item = drawing.nodes.get(state) or drawing.clusters.get(state)
    return item.attrs.get("class", "state") if item is not None else "state"


def _status_colour(status: str) -> str:
    return END_MARKS.get(status, ("", "#1f3b63"))[1]
