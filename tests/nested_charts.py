"""Randomly generated nested charts for property tests: a tree of nodes (the top level,
atomic, compound, parallel and final states, regions and history pseudo-states) with
transitions between them, valid by construction, and its YAML text.

The tree is what `nested_reference.Reference` runs; the YAML is what `statemachines.load`
reads. Every transition appends its own label to `context.trace`, so comparing contexts
compares which transitions fired, in which order.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

EVENTS = ("e1", "e2", "e3", "e4")
MAX_DEPTH = 4  # states inside states (a parallel state's regions are not a level)
MAX_STATES = 14
SOURCES = ("atomic", "compound", "parallel", "region")  # nodes that may have transitions
TARGETS = ("atomic", "compound", "parallel", "final", "history")
CONTAINERS = ("top", "compound", "region")  # nodes whose children are active one at a time
TRUE, FALSE = "1 == 1", "1 == 2"


@dataclass(eq=False)
class Edge:
    """One transition: to `target` (None: internal) when `guard` is not False."""

    label: str
    target: Node | None
    guard: bool | None = None


@dataclass(eq=False)
class Node:
    name: str
    kind: str  # top, atomic, compound, parallel, region, final, history
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    initial: Node | None = None
    on: dict[str, list[Edge]] = field(default_factory=dict)
    outcome: str = "succeeded"  # of a final state
    history: str = "shallow"  # of a history pseudo-state
    default: Node | None = None  # of a history pseudo-state

    def __repr__(self) -> str:
        return f"<{self.kind} {self.path or 'TOP'}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    @property
    def path(self) -> str:
        names = [node.name for node in reversed([self, *self.ancestors()]) if node.parent]
        return ".".join(names)

    def ancestors(self) -> list[Node]:
        """The nodes holding this one, innermost first, the top level last."""
        found = []
        node = self.parent
        while node is not None:
            found.append(node)
            node = node.parent
        return found

    def contains(self, other: Node) -> bool:
        """Whether `other` lies strictly inside this node."""
        return self in other.ancestors()

    def walk(self) -> Iterator[Node]:
        """This node and every node inside it, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(eq=False)
class Chart:
    top: Node
    name: str = ""
    text: str = ""

    def nodes(self) -> list[Node]:
        return list(self.top.walk())[1:]

    def __repr__(self) -> str:
        return f"Chart(\n{self.text})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class _Builder:
    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.states = 0
        self.labels = 0

    def name(self, prefix: str) -> str:
        self.states += 1
        return f"{prefix}{self.states}"

    def label(self) -> str:
        self.labels += 1
        return f"t{self.labels}"

    # -- the tree ---------------------------------------------------------------------------
    def fill(self, container: Node, depth: int) -> None:
        """Give `container` its states, at `depth` (1 for the top level's)."""
        draw = self.draw
        nested = depth < MAX_DEPTH and self.states < MAX_STATES
        kinds = ["atomic", "compound", "parallel"] if nested else ["atomic"]
        count = draw(st.integers(2, 3) if container.kind == "top" else st.integers(1, 3))
        for _ in range(count):
            kind = draw(st.sampled_from(kinds)) if self.states < MAX_STATES else "atomic"
            self.add(container, kind, depth)
        initial = draw(st.sampled_from(container.children))
        container.initial = initial
        finals = draw(st.integers(1, 2) if container.kind == "top" else st.integers(0, 2))
        for _ in range(finals):
            final = self.add(container, "final", depth)
            final.outcome = draw(st.sampled_from(["succeeded", "succeeded", "failed"]))
        if container.kind == "top":
            container.children[-finals].outcome = "succeeded"  # a way to succeed
        elif draw(st.integers(0, 2)) == 0:
            history = self.add(container, "history", depth)
            history.history = draw(st.sampled_from(["shallow", "deep"]))
        order = draw(st.permutations(container.children))
        container.children = list(order)

    def add(self, container: Node, kind: str, depth: int) -> Node:
        prefix = {"atomic": "s", "compound": "c", "parallel": "p", "final": "f", "history": "h"}
        node = Node(self.name(prefix[kind]), kind, container)
        container.children.append(node)
        if kind == "compound":
            self.fill(node, depth + 1)
        elif kind == "parallel":
            for _ in range(self.draw(st.integers(2, 3))):
                region = Node(self.name("r"), "region", node)
                node.children.append(region)
                self.fill(region, depth + 1)
        return node

    # -- the transitions --------------------------------------------------------------------
    def edge(self, targets: list[Node], internal: bool = True, source: Node | None = None) -> Edge:
        draw = self.draw
        choices: list[Node | None] = [*targets, None] if internal else [*targets]
        # More often than their share: a history pseudo-state, or a final state of a node
        # around the source (which finishes it: `done`).
        histories = [node for node in targets if node.kind == "history"]
        around = source.ancestors() if source is not None else []
        finals = [node for node in targets if node.kind == "final" and node.parent in around]
        bias = draw(st.integers(0, 5))
        if histories and bias == 0:
            choices = [*histories]
        elif finals and bias == 1:
            choices = [*finals]
        target = draw(st.sampled_from(choices))
        guard = draw(st.sampled_from([None, None, None, True, False])) if internal else None
        return Edge(self.label(), target, guard)

    def transitions(self, chart: Chart) -> None:
        draw = self.draw
        nodes = chart.nodes()
        targets = [node for node in nodes if node.kind in TARGETS]
        for node in nodes:
            if node.kind not in SOURCES:
                continue
            most = 2 if node.kind == "atomic" else 1
            for event in draw(st.lists(st.sampled_from(EVENTS), max_size=most, unique=True)):
                count = draw(st.integers(1, 2))
                node.on[event] = [self.edge(targets, source=node) for _ in range(count)]
            finals = [child for child in node.children if child.kind == "final"]
            if node.kind == "parallel" or (node.kind == "compound" and finals):
                node.on["done"] = [self.edge(completion_targets(node, nodes), internal=False)]
            if node.kind in ("compound", "parallel") and draw(st.integers(0, 3)) == 0:
                node.on["failed"] = [self.edge(completion_targets(node, nodes), internal=False)]
        for node in nodes:
            if node.kind == "history" and draw(st.booleans()):
                assert node.parent is not None
                inside = [inner for inner in node.parent.walk() if inner.kind in TARGETS[:4]]
                node.default = draw(
                    st.sampled_from([inner for inner in inside if inner is not node.parent])
                )

    def repair(self, chart: Chart) -> None:
        """Add transitions until the chart passes validation: a way out of every atomic
        state, and every state reachable."""
        nodes = chart.nodes()
        targets = [node for node in nodes if node.kind in TARGETS]
        for node in nodes:
            outer = [node, *node.ancestors()[:-1]]
            if node.kind == "atomic" and not any(around.on for around in outer):
                node.on[self.draw(st.sampled_from(EVENTS))] = [self.edge(targets)]
        while True:
            seen = reached(chart)
            missing = [node for node in nodes if node not in seen and node.kind != "history"]
            if not missing:
                return
            sources = [node for node in nodes if node in seen and node.kind in SOURCES]
            source = self.draw(st.sampled_from(sources))
            event = self.draw(st.sampled_from(EVENTS))
            source.on.setdefault(event, []).append(Edge(self.label(), missing[0]))


def completion_targets(node: Node, nodes: list[Node]) -> list[Node]:
    """Where a `done` or `failed` transition of `node` may go so that no chain of them
    loops: a state that is not final (entering it enters no final state, as no initial
    state is final), or a final state of a node around `node`."""
    around = node.ancestors()
    return [
        other
        for other in nodes
        if other.kind in ("atomic", "compound", "parallel")
        or (other.kind == "final" and other.parent in around)
    ]


def reached(chart: Chart) -> set[Node]:
    """Every node an instance may enter, by the transitions of every node entered (guards
    aside), as validation counts them."""
    seen: set[Node] = set()
    todo: list[Node] = []

    def enter(node: Node) -> None:
        for inner in [node, *node.ancestors()[:-1], *defaults(node)]:
            if inner not in seen:
                seen.add(inner)
                todo.append(inner)

    assert chart.top.initial is not None
    enter(chart.top.initial)
    while todo:
        node = todo.pop()
        for edges in node.on.values():
            for edge in edges:
                if edge.target is not None:
                    enter(edge.target)
        if node.default is not None:
            enter(node.default)
    return seen


def defaults(node: Node) -> list[Node]:
    """What entering `node` enters below it by default."""
    if node.kind == "history":
        assert node.parent is not None and node.parent.initial is not None
        return [node.parent.initial, *defaults(node.parent.initial)]
    if node.kind == "parallel":
        return [inner for region in node.children for inner in [region, *defaults(region)]]
    if node.initial is not None:
        return [node.initial, *defaults(node.initial)]
    return []


# -- YAML ------------------------------------------------------------------------------------
def _edge(edge: Edge) -> dict[str, Any]:
    written: dict[str, Any] = {}
    if edge.target is not None:
        written["to"] = edge.target.path
    if edge.guard is not None:
        written["if"] = TRUE if edge.guard else FALSE
    written["assign"] = {"trace": f"context.trace + ['{edge.label}']"}
    return written


def _reactions(node: Node) -> dict[str, Any]:
    if not node.on:
        return {}
    on = {
        event: _edge(edges[0]) if len(edges) == 1 else [_edge(edge) for edge in edges]
        for event, edges in node.on.items()
    }
    return {"on": on}


def _children(node: Node) -> dict[str, Any]:
    assert node.initial is not None
    states = {child.name: _state(child) for child in node.children}
    return {"initial": node.initial.name, "states": states}


def _state(node: Node) -> dict[str, Any]:
    if node.kind == "final":
        return {"final": True if node.outcome == "succeeded" else "failed"}
    if node.kind == "history":
        written: dict[str, Any] = {"history": node.history}
        if node.default is not None:
            written["default"] = node.default.path
        return written
    if node.kind == "compound":
        return {**_children(node), **_reactions(node)}
    if node.kind == "parallel":
        regions = {
            region.name: {**_children(region), **_reactions(region)} for region in node.children
        }
        return {"parallel": regions, **_reactions(node)}
    return _reactions(node)


def render(chart: Chart) -> str:
    body = yaml.safe_dump(_children(chart.top), sort_keys=False, width=1000)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    chart.name = f"nested_{digest}"
    return f"name: {chart.name}\n{body}"


@st.composite
def charts(draw: Any) -> Chart:
    """A valid nested chart: states up to MAX_DEPTH deep, parallel states of 2-3 regions,
    history pseudo-states, final states, events e1-e4 to anywhere (full dotted names)."""
    builder = _Builder(draw)
    chart = Chart(Node("", "top"))
    builder.fill(chart.top, 1)
    builder.transitions(chart)
    builder.repair(chart)
    chart.text = render(chart)
    return chart


events = st.lists(st.sampled_from(EVENTS), min_size=3, max_size=20)


Pending = list[tuple[Callable[[Node], None], str]]  # where a target read goes, and its name


# -- reading a chart back (to replay a reported example) ------------------------------------
def parse(text: str) -> Chart:
    """The chart of YAML written like `render` writes it (full dotted names, or names
    found once anywhere; labels read from the `trace` assignments)."""
    data = yaml.safe_load(text)
    chart = Chart(Node("", "top"), data["name"], text)
    pending: Pending = []
    _parse_children(chart.top, data, pending)
    nodes = {node.path: node for node in chart.nodes()}
    names: dict[str, list[Node]] = {}
    for node in chart.nodes():
        names.setdefault(node.name, []).append(node)
    for point, target in pending:
        found = nodes.get(target) or names.get(target, [None])[0]
        assert found is not None, f"no state {target!r}"
        point(found)
    return chart


def _parse_children(container: Node, data: dict[str, Any], pending: Pending) -> None:
    for name, raw in (data.get("states") or {}).items():
        container.children.append(_parse_state(name, raw or {}, container, pending))
    container.initial = next(child for child in container.children if child.name == data["initial"])
    _parse_on(container, data, pending)


def _parse_state(name: str, raw: dict[str, Any], parent: Node, pending: Pending) -> Node:
    if "final" in raw:
        return Node(
            name, "final", parent, outcome="failed" if raw["final"] == "failed" else "succeeded"
        )
    if "history" in raw:
        node = Node(name, "history", parent, history=raw["history"])
        if "default" in raw:
            pending.append((functools.partial(setattr, node, "default"), raw["default"]))
        return node
    if "parallel" in raw:
        node = Node(name, "parallel", parent)
        for region_name, region_raw in raw["parallel"].items():
            region = Node(region_name, "region", node)
            node.children.append(region)
            _parse_children(region, region_raw, pending)
        _parse_on(node, raw, pending)
        return node
    if "states" in raw:
        node = Node(name, "compound", parent)
        _parse_children(node, raw, pending)
        return node
    node = Node(name, "atomic", parent)
    _parse_on(node, raw, pending)
    return node


def _parse_on(node: Node, raw: dict[str, Any], pending: Pending) -> None:
    on = raw.get("on", raw.get(True)) or {}  # `on` unquoted is YAML 1.1's true
    for event, written in on.items():
        edges = []
        for item in written if isinstance(written, list) else [written]:
            item = {"to": item} if isinstance(item, str) else item
            trace = str(item.get("assign", {}).get("trace", ""))
            labels = re.findall(r"'(\w+)'", trace)
            guard = {None: None, TRUE: True, FALSE: False}[item.get("if")]
            edge = Edge(labels[0] if labels else "", None, guard)
            if "to" in item:
                pending.append((functools.partial(setattr, edge, "target"), item["to"]))
            edges.append(edge)
        node.on[str(event)] = edges
