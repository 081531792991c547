"""From a definition to a drawing: every state a node or cluster, every transition an edge.

A `Drawing` is plain data (names, attributes, labels): overlays restyle it, `dotsource` writes it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import graphviz

from statemachines import Definition
from statemachines.durations import format_duration
from statemachines.model import Region, State, TaskSpec, Transition, join

Direction = Literal["LR", "TB", "RL", "BT"]
EdgeKind = Literal["initial", "event", "done", "failed", "timer", "always"]
FONT = "Helvetica"
GUARD_WIDTH = 30
LARGE = 80  # states; above this, layout effort is bounded

# One palette for the whole package; overlays pick from the same family.
INK = "#333333"
MUTED = "#666666"
TASK_FILL, TASK_LINE = "#e8f0fe", "#3f5f8f"
WAIT_FILL, WAIT_LINE = "#ffffff", "#555555"
CHOICE_FILL, CHOICE_LINE = "#fff4d6", "#a8741a"
FOREACH_FILL, FOREACH_LINE = "#efe8fb", "#5e4596"
SUCCEEDED_FILL, SUCCEEDED_LINE = "#e3f4e6", "#2e7d32"
FAILED_FILL, FAILED_LINE = "#fdeaea", "#c62828"
PARALLEL_FILL, PARALLEL_LINE = "#f6f8fb", "#3f5f8f"
EDGE_COLOURS: dict[EdgeKind, str] = {
    "initial": "#000000",
    "event": INK,
    "done": "#2e7d32",
    "failed": "#c62828",
    "timer": "#5e4596",
    "always": "#8a8a8a",
}
EDGE_STYLES: dict[EdgeKind, str] = {
    "initial": "solid",
    "event": "solid",
    "done": "solid",
    "failed": "solid",
    "timer": "dashed",
    "always": "dotted",
}


@dataclass(frozen=True)
class Line:
    """One line of a state's label under its name: small, coloured text ("" keeps the colour)."""

    text: str
    colour: str = "#666666"
    size: int = 10
    bold: bool = False


@dataclass
class Node:
    """A graphviz node; `state` is the state path it draws (None for dots and anchors)."""

    name: str
    attrs: dict[str, str]
    state: str | None = None
    title: str = ""
    lines: list[Line] = field(default_factory=list)  # under the title


@dataclass
class Cluster:
    """A parallel state (or one of its regions) drawn as a box around its states."""

    name: str
    attrs: dict[str, str]
    items: list[Node | Cluster] = field(default_factory=list)
    state: str | None = None
    title: str = ""
    lines: list[Line] = field(default_factory=list)


@dataclass
class Edge:
    """One transition: `trigger` is `done`, `failed`, `always`, `after:KEY` or an event name."""

    tail: str
    head: str
    attrs: dict[str, str]
    kind: EdgeKind
    source: str | None
    trigger: str | None
    target: str
    text: str = ""  # the visible label, before any overlay adds to it
    also: tuple[str, ...] = ()  # other spellings of the trigger (`after 2d`)


@dataclass
class Internal:
    """A transition that stays in its state (`to` omitted): a line inside the state's box."""

    state: str
    trigger: str
    also: tuple[str, ...]
    text: str
    line: int  # index in the state's `lines`


@dataclass
class Drawing:
    """Everything the DOT text needs, in a stable order (file order of states and transitions)."""

    name: str
    graph_attrs: dict[str, str]
    items: list[Node | Cluster]
    edges: list[Edge]
    nodes: dict[str, Node]  # by state path, for states drawn as nodes
    clusters: dict[str, Cluster]  # by state path, for parallel states
    internals: list[Internal] = field(default_factory=list)
    by_ends: dict[tuple[str | None, str], list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for number, edge in enumerate(self.edges):
            if edge.attrs.get("style") != "invis":
                self.by_ends.setdefault((edge.source, edge.target), []).append(number)


def build_drawing(definition: Definition, direction: Direction = "LR") -> Drawing:
    """The drawing of `definition`, laid out `direction` (LR left to right, TB top to bottom)."""
    return _DrawingBuilder(definition, direction).drawing


_CACHE: OrderedDict[tuple[str, str, str], Drawing] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def cached_drawing(definition: Definition, direction: Direction = "LR") -> Drawing:
    """`build_drawing`, remembered per definition content; callers must not change the result."""
    if not (definition.digest or definition.source):
        return build_drawing(definition, direction)  # nothing to recognise it by next time
    key = (definition.digest or definition.source, definition.name, direction)
    with _CACHE_LOCK:
        drawing = _CACHE.get(key)
        if drawing is not None:
            _CACHE.move_to_end(key)
            return drawing
    drawing = build_drawing(definition, direction)
    with _CACHE_LOCK:
        _CACHE[key] = drawing
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return drawing


class _DrawingBuilder:
    """Walks a definition's regions once, collecting nodes, clusters and edges."""

    def __init__(self, definition: Definition, direction: Direction) -> None:
        self.definition = definition
        self.edges: list[Edge] = []
        self.nodes: dict[str, Node] = {}
        self.clusters: dict[str, Cluster] = {}
        self.internals: list[Internal] = []
        items = self.region(definition.root)
        large = {}
        if len(self.nodes) + len(self.clusters) > LARGE:
            # Long edges into a common final state can keep dot's positioning busy for minutes;
            # fewer network simplex rounds cost little in a graph this size.
            large = {"nslimit": "0.2"}
        self.drawing = Drawing(
            name=definition.name,
            graph_attrs={
                "rankdir": direction,
                "fontname": FONT,
                "bgcolor": "white",
                "compound": "true",
                "nodesep": "0.3",
                "ranksep": "0.45",
                "pad": "0.2",
                "labelloc": "t",
                "labeljust": "l",
                "label": definition.name,
                "fontsize": "14",
                "id": f"definition-{css_name(definition.name)}",
                "class": "turnout-diagram",
                **large,
            },
            items=items,
            edges=self.edges,
            nodes=self.nodes,
            clusters=self.clusters,
            internals=self.internals,
        )

    # -- states ---------------------------------------------------------------------------
    def region(self, region: Region) -> list[Node | Cluster]:
        dot = Node(
            initial_name(region.path),
            {
                "shape": "point",
                "width": "0.16",
                "fillcolor": "black",
                "color": "black",
                "id": f"initial-{css_name(region.path) or 'root'}",
                "class": "initial",
                "tooltip": "start",
            },
        )
        items: list[Node | Cluster] = [dot]
        items.extend(self.state(state) for state in region.states)
        first = join(region.path, region.initial)
        start_attrs = self.edge_attrs("initial", first, "")
        self.edges.append(_layout_edge(dot.name, self.entry(first), first, start_attrs))
        for state in region.states:
            self.transitions(state)
        return items

    def state(self, state: State) -> Node | Cluster:
        if state.parallel:
            return self.parallel(state)
        node = Node(state.path, {}, state.path, title=state.name)
        attrs = {
            "id": f"state-{css_name(state.path)}",
            "fontname": FONT,
            "fontsize": "12",
            "style": "rounded,filled",
            "shape": "box",
            "margin": "0.12,0.06",
            "class": f"state kind-{state.kind} state-{css_name(state.path)}",
        }
        if state.kind == "task" and state.task is not None:
            attrs.update(fillcolor=TASK_FILL, color=TASK_LINE)
            node.lines = task_lines(state.task)
        elif state.kind == "foreach" and state.foreach is not None:
            attrs.update(shape="box3d", style="filled", fillcolor=FOREACH_FILL, color=FOREACH_LINE)
            each = state.foreach
            limit = f", {each.concurrency} at a time" if each.concurrency else ""
            node.lines = [
                small(f"for each in {shorten(each.items.text, 34)}{limit}"),
                *task_lines(each.task),
            ]
        elif state.kind == "final":
            failed = state.final == "failed"
            attrs.update(
                peripheries="2",
                style="filled",
                fillcolor=FAILED_FILL if failed else SUCCEEDED_FILL,
                color=FAILED_LINE if failed else SUCCEEDED_LINE,
            )
            attrs["class"] += " final-failed" if failed else " final-succeeded"
            colour = FAILED_LINE if failed else SUCCEEDED_LINE
            node.lines = [small("✗ failed" if failed else "✓ succeeded", colour)]
        elif state.kind == "choice":
            attrs.update(
                shape="diamond",
                style="filled",
                fillcolor=CHOICE_FILL,
                color=CHOICE_LINE,
                fontsize="11",
                margin="0.02",
            )
        else:
            attrs.update(fillcolor=WAIT_FILL, color=WAIT_LINE)
        attrs["tooltip"] = state.description or f"{state.path} ({state.kind})"
        node.attrs = attrs
        self.nodes[state.path] = node
        return node

    def parallel(self, state: State) -> Cluster:
        cluster = Cluster(
            cluster_name(state.path),
            {
                "id": f"state-{css_name(state.path)}",
                "style": "rounded,filled",
                "fillcolor": PARALLEL_FILL,
                "color": PARALLEL_LINE,
                "penwidth": "1.4",
                "fontname": FONT,
                "fontsize": "12",
                "margin": "10",
                "labeljust": "l",
                "fontcolor": INK,
                "class": f"state kind-parallel state-{css_name(state.path)}",
                "tooltip": state.description or f"{state.path} (parallel)",
            },
            state=state.path,
            title=state.name,
            lines=[small("parallel: every branch")],
        )
        enter = Node(entry_name(state.path), anchor_attrs())
        leave = Node(exit_name(state.path), anchor_attrs())
        cluster.items.append(enter)
        for region in state.parallel:
            box = Cluster(
                cluster_name(region.path),
                {
                    "id": f"region-{css_name(region.path)}",
                    "style": "rounded,dashed,filled",
                    "fillcolor": "white",
                    "color": "#8193ad",
                    "penwidth": "1",
                    "fontname": FONT,
                    "fontsize": "11",
                    "fontcolor": INK,
                    "labeljust": "l",
                    "class": f"region region-{css_name(region.path)}",
                    "tooltip": f"branch {region.name} of {state.path}",
                },
                title=region.name,
            )
            box.items = self.region(region)
            cluster.items.append(box)
            self.edges.append(_layout_edge(enter.name, initial_name(region.path), region.path))
            for inner in region.states:
                if inner.is_final:
                    inner_exit = self.exit(join(region.path, inner.name))
                    self.edges.append(_layout_edge(inner_exit, leave.name, state.path))
        cluster.items.append(leave)
        self.clusters[state.path] = cluster
        return cluster

    # -- transitions ----------------------------------------------------------------------
    def transitions(self, state: State) -> None:
        for event, transitions in state.on:
            kind: EdgeKind = event if event in ("done", "failed") else "event"  # type: ignore[assignment]
            self.add(state, kind, event, event, transitions)
        for timer in state.after:
            name = f"after {timer.key}"
            self.add(state, "timer", timer.event, name, timer.transitions, (name, timer.label))
        self.add(state, "always", "always", "", state.always)

    def add(
        self,
        state: State,
        kind: EdgeKind,
        trigger: str,
        name: str,
        transitions: tuple[Transition, ...],
        also: tuple[str, ...] = (),
    ) -> None:
        """Draw the `transitions` of `state` that `trigger` fires, labelled `name`."""
        region_path = state.path.rpartition(".")[0]
        guarded = any(transition.guard is not None for transition in transitions)
        for index, transition in enumerate(transitions):
            target = (
                state.path if transition.target is None else join(region_path, transition.target)
            )
            guard = transition.guard.text if transition.guard is not None else None
            if guard is None and guarded:
                guard = "else"
            full = f"{name} [{guard}]".strip() if guard else name
            text = f"{name} [{shorten(guard, GUARD_WIDTH)}]".strip() if guard else name
            reentry = transition.target is not None and target in self.clusters
            if transition.target is None or (reentry and target == state.path):
                # Drawn inside the state, as statecharts do: a loop would suggest leaving it,
                # and a loop on a parallel state's box has no good route.
                if transition.target is None:
                    keys = ", ".join(key for key, _ in transition.assign)
                    text = f"{text} / set {shorten(keys, GUARD_WIDTH)}".strip()
                else:
                    text = f"{text} → {state.name} (again)".strip()
                item = self.clusters.get(state.path) or self.nodes[state.path]
                self.internals.append(Internal(state.path, trigger, also, text, len(item.lines)))
                item.lines.append(small(text, EDGE_COLOURS[kind]))
                item.attrs["class"] += f" event-{css_name(trigger)}"
                continue
            attrs = self.edge_attrs(kind, state.path, text, full)
            attrs["id"] = css_name(f"transition-{state.path}-{trigger}-{index}-{target}")
            attrs["class"] = (
                f"transition trigger-{kind} event-{css_name(trigger)} "
                f"from-{css_name(state.path)} to-{css_name(target)}"
            )
            tail, head = self.exit(state.path), self.entry(target)
            if state.path in self.clusters:
                attrs["ltail"] = self.clusters[state.path].name
                # A clipped edge out of a cluster is short; one more rank keeps its label outside.
                attrs["minlen"] = "2"
            elif target == state.path:
                # Over the top, where dot keeps the loop's label clear of the loop itself.
                attrs["tailport"] = attrs["headport"] = "n"
            if target in self.clusters and head != tail:
                attrs["lhead"] = self.clusters[target].name
            self.edges.append(
                Edge(tail, head, attrs, kind, state.path, trigger, target, text, also)
            )

    def edge_attrs(self, kind: EdgeKind, source: str, text: str, full: str = "") -> dict[str, str]:
        colour = EDGE_COLOURS[kind]
        attrs = {
            "color": colour,
            "style": EDGE_STYLES[kind],
            "fontname": FONT,
            "fontsize": "10",
            "fontcolor": colour,
            "arrowsize": "0.7",
        }
        if kind == "initial":
            attrs["id"] = css_name(f"start-{source}")
            attrs["class"] = f"transition trigger-initial to-{css_name(source)}"
        if text:
            attrs["label"] = graphviz.escape(text)
        if full:
            attrs["tooltip"] = attrs["labeltooltip"] = graphviz.escape(full)
        return attrs

    def entry(self, path: str) -> str:
        return entry_name(path) if self.is_parallel(path) else path

    def exit(self, path: str) -> str:
        return exit_name(path) if self.is_parallel(path) else path

    def is_parallel(self, path: str) -> bool:
        return bool(self.definition.state(path).parallel)


def _layout_edge(tail: str, head: str, target: str, attrs: dict[str, str] | None = None) -> Edge:
    """An edge no transition stands for: a start arrow, or (without `attrs`) an invisible one
    that keeps a parallel state's branches between its entry and exit anchors."""
    return Edge(tail, head, attrs or {"style": "invis"}, "initial", None, None, target)


# -- labels and names -----------------------------------------------------------------------
def task_lines(task: TaskSpec) -> list[Line]:
    """The task name, then small marks for retries, timeout and compensation."""
    lines = [small(task.name, "#1f3b63")]
    marks = []
    if task.retry.attempts > 1:
        marks.append(f"↻ {task.retry.attempts} attempts")
    if task.timeout is not None:
        marks.append(f"timeout {duration(task.timeout)}")
    if marks:
        lines.append(small(" · ".join(marks), MUTED, 9))
    if task.compensate:
        lines.append(small(f"↶ undo: {task.compensate}", "#8a4b08", 9))
    return lines


def duration(delta: timedelta) -> str:
    return format_duration(delta)


def small(text: str, colour: str = MUTED, size: int = 10, bold: bool = False) -> Line:
    return Line(text, colour, size, bold)


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def anchor_attrs() -> dict[str, str]:
    return {"shape": "point", "style": "invis", "width": "0.01", "height": "0.01", "label": ""}


def initial_name(region_path: str) -> str:
    return f"{region_path}/initial"


def entry_name(path: str) -> str:
    return f"{path}/enter"


def exit_name(path: str) -> str:
    return f"{path}/leave"


def cluster_name(path: str) -> str:
    return f"cluster_{path}"


def css_name(text: str) -> str:
    """`text` made safe for an SVG id or class: letters, digits, `_`, `.` and `-` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
