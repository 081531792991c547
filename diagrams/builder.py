"""Walks a definition's chart once, collecting nodes, clusters and edges into a `Drawing`.

A compound state is a box holding its initial dot and its children, a parallel state a box
holding one dashed box per branch; a history pseudo-state is a small circle (H or H*). Every
transition's target is the node the chart resolves it to; an edge that enters or leaves a box
is drawn to or from the box's edge. Nodes inside a collapsed box are drawn as that box.
"""

from __future__ import annotations

import graphviz

from statemachines import Definition
from statemachines.chart import Chart
from statemachines.model import Region, State, Transition, join

from .nesting import Nesting
from .shapes import (
    CALL_LINK,
    CHOICE_FILL,
    CHOICE_LINE,
    COMPOUND_FILL,
    COMPOUND_LINE,
    EDGE_COLOURS,
    EDGE_STYLES,
    FAILED_FILL,
    FAILED_LINE,
    FONT,
    FOREACH_FILL,
    FOREACH_LINE,
    GUARD_WIDTH,
    INK,
    LARGE,
    MUTED,
    PARALLEL_FILL,
    PARALLEL_LINE,
    SUCCEEDED_FILL,
    SUCCEEDED_LINE,
    TASK_FILL,
    TASK_LINE,
    WAIT_FILL,
    WAIT_LINE,
    Cluster,
    Direction,
    Drawing,
    Edge,
    EdgeKind,
    Internal,
    Node,
    anchor_attrs,
    call_lines,
    caught,
    cluster_name,
    css_name,
    entry_name,
    exit_name,
    foreach_label,
    initial_name,
    shorten,
    small,
    task_lines,
)

Owner = State | Region  # what a transition leaves: a state, or a parallel state's branch


class DrawingBuilder:
    """The drawing of one definition, `depth` levels of nesting deep (None: every level)."""

    def __init__(self, definition: Definition, direction: Direction, depth: int | None) -> None:
        self.definition = definition
        self.chart = Chart(definition)
        self.nesting = Nesting(self.chart, depth)
        self.edges: list[Edge] = []
        self.nodes: dict[str, Node] = {}
        self.clusters: dict[str, Cluster] = {}
        self.branches: dict[str, Cluster] = {}
        self.internals: list[Internal] = []
        self.merged: set[tuple[str, str, str, str]] = set()  # edges out of collapsed boxes
        self.ids: set[str] = set()
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
            branches=self.branches,
            shown=dict(self.nesting.shown),
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
        if self.nesting.is_compound(first) and self.nesting.is_cluster(first):
            start_attrs["lhead"] = cluster_name(first)
        self.edges.append(_layout_edge(dot.name, self.entry(first), first, start_attrs))
        for state in region.states:
            self.transitions(state)
        return items

    def state(self, state: State) -> Node | Cluster:
        if state.path in self.nesting.collapsed:
            return self.collapsed(state)
        if state.parallel:
            return self.parallel(state)
        if state.region is not None:
            return self.compound(state)
        if state.kind == "history":
            return self.history(state)
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
        elif state.kind == "call" and state.call is not None:
            attrs.update(fillcolor=TASK_FILL, color=TASK_LINE, peripheries="2")
            node.lines = call_lines(state.call)
            version = f"?version={state.call.version}" if state.call.version else ""
            attrs["href"] = CALL_LINK.format(name=state.call.definition) + version
        elif state.kind == "foreach" and state.foreach is not None:
            attrs.update(shape="box3d", style="filled", fillcolor=FOREACH_FILL, color=FOREACH_LINE)
            each, label = state.foreach, small(foreach_label(state.foreach))
            if each.call is not None:  # a child per item: linked as a call state is
                node.lines = [label, *call_lines(each.call)]
                version = f"?version={each.call.version}" if each.call.version else ""
                attrs["href"] = CALL_LINK.format(name=each.call.definition) + version
            elif each.task is not None:
                node.lines = [label, *task_lines(each.task)]
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
            mark = "✓ succeeded"
            if failed:  # a named failure shows its type
                mark = f"✗ {shorten(state.error.type, 34)}" if state.error else "✗ failed"
            node.lines = [small(mark, colour)]
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
        self.clusters[state.path] = cluster
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
            self.branches[region.path] = box
            box.items = self.region(region)
            if _leaves(region):
                box.items.append(Node(exit_name(region.path), anchor_attrs()))
            cluster.items.append(box)
            self.edges.append(_layout_edge(enter.name, initial_name(region.path), region.path))
            for inner in region.states:
                if inner.is_final:
                    inner_exit = self.exit(join(region.path, inner.name))
                    self.edges.append(_layout_edge(inner_exit, leave.name, state.path))
            self.transitions(region)
        cluster.items.append(leave)
        return cluster

    def compound(self, state: State) -> Cluster:
        assert state.region is not None
        cluster = Cluster(
            cluster_name(state.path),
            {
                "id": f"state-{css_name(state.path)}",
                "style": "rounded,filled",
                "fillcolor": COMPOUND_FILL,
                "color": COMPOUND_LINE,
                "penwidth": "1.2",
                "fontname": FONT,
                "fontsize": "12",
                "margin": "10",
                "labeljust": "l",
                "fontcolor": INK,
                "class": f"state kind-compound state-{css_name(state.path)}",
                "tooltip": state.description or f"{state.path} (compound)",
            },
            state=state.path,
            title=state.name,
        )
        self.clusters[state.path] = cluster
        cluster.items = self.region(state.region)
        if _leaves(state):
            cluster.items.append(Node(exit_name(state.path), anchor_attrs()))
        return cluster

    def history(self, state: State) -> Node:
        deep = state.history == "deep"
        back = f"{state.history} history: back to where {self.chart.parent(state.path)} was"
        node = Node(state.path, {}, state.path, title="H*" if deep else "H")
        node.attrs = {
            "id": f"state-{css_name(state.path)}",
            "fontname": FONT,
            "fontsize": "10",
            "shape": "circle",
            "width": "0.34",
            "fixedsize": "true",
            "style": "filled",
            "fillcolor": WAIT_FILL,
            "color": WAIT_LINE,
            "class": f"state kind-history history-{state.history} state-{css_name(state.path)}",
            "tooltip": state.description or f"{state.path} ({back})",
        }
        self.nodes[state.path] = node
        default = state.default
        target = self.chart.target(state.path, default) if default is not None else None
        if target is not None:
            attrs = self.edge_attrs("always", state.path, "")
            attrs.update(style="dashed", color=MUTED, fontcolor=MUTED)
            attrs["id"] = css_name(f"transition-{state.path}-default-0-{target}")
            attrs["class"] = (
                f"transition trigger-default from-{css_name(state.path)} "
                f"to-{css_name(self.nesting.box_of(target))}"
            )
            self.connect(state.path, target, attrs, "always", "default", "", ())
        return node

    def collapsed(self, state: State) -> Node:
        """A compound or parallel state drawn as one box: its transitions and those of
        everything inside it start at the box."""
        kind = "parallel" if state.parallel else "compound"
        inside = [path for path in self.chart.below(state.path) if path in self.chart.states]
        count = sum(1 for path in inside if self.chart.states[path].kind != "history")
        summary = (
            f"parallel: {len(state.parallel)} branches, {count} states"
            if state.parallel
            else f"{count} states inside"
        )
        node = Node(state.path, {}, state.path, title=state.name, lines=[small(summary)])
        node.attrs = {
            "id": f"state-{css_name(state.path)}",
            "fontname": FONT,
            "fontsize": "12",
            "style": "rounded,filled,bold",
            "shape": "box",
            "margin": "0.12,0.06",
            "fillcolor": PARALLEL_FILL if state.parallel else COMPOUND_FILL,
            "color": PARALLEL_LINE if state.parallel else COMPOUND_LINE,
            "class": f"state kind-{kind} collapsed state-{css_name(state.path)}",
            "tooltip": state.description or f"{state.path} ({kind}, collapsed)",
        }
        self.nodes[state.path] = node
        for path in self.chart.below(state.path):
            owner = self.chart.states.get(path) or self.chart.branches[path]
            self.transitions(owner)
        return node

    # -- transitions ----------------------------------------------------------------------
    def transitions(self, owner: Owner) -> None:
        for event, transitions in owner.on:
            kind: EdgeKind = event if event in ("done", "failed") else "event"  # type: ignore[assignment]
            self.add(owner, kind, event, event, transitions)
        for timer in owner.after:
            name = timer.name
            self.add(owner, "timer", timer.event, name, timer.transitions, (name, timer.label))
        self.add(owner, "always", "always", "", owner.always)

    def add(
        self,
        owner: Owner,
        kind: EdgeKind,
        trigger: str,
        name: str,
        transitions: tuple[Transition, ...],
        also: tuple[str, ...] = (),
    ) -> None:
        """Draw the `transitions` of `owner` that `trigger` fires, labelled `name`."""
        source = owner.path
        shown = self.nesting.box_of(source)
        guarded = any(transition.guard is not None for transition in transitions)
        for index, transition in enumerate(transitions):
            target = source if transition.target is None else self.target(source, transition)
            guard = caught(transition) or (transition.guard.text if transition.guard else None)
            if guard is None and guarded:
                guard = "else"
            full = f"{name} [{guard}]".strip() if guard else name
            text = f"{name} [{shorten(guard, GUARD_WIDTH)}]".strip() if guard else name
            if shown != source and self.nesting.box_of(target) == shown:
                continue  # from inside a collapsed box to inside it: not drawn
            reentry = transition.target is not None and self.nesting.is_cluster(target)
            if transition.target is None or (reentry and target == source):
                # Drawn inside the state, as statecharts do: a loop would suggest leaving it,
                # and a loop on a parallel state's box has no good route.
                if shown != source:
                    continue
                if transition.target is None:
                    keys = ", ".join(key for key, _ in transition.assign)
                    text = f"{text} / set {shorten(keys, GUARD_WIDTH)}".strip()
                else:
                    text = f"{text} → {owner.name} (again)".strip()
                item = self.clusters.get(source) or self.branches.get(source) or self.nodes[source]
                self.internals.append(Internal(source, trigger, also, text, len(item.lines)))
                item.lines.append(small(text, EDGE_COLOURS[kind]))
                item.attrs["class"] += f" event-{css_name(trigger)}"
                continue
            drawn = self.nesting.box_of(target)
            attrs = self.edge_attrs(kind, shown, text, full)
            attrs["id"] = css_name(f"transition-{source}-{trigger}-{index}-{target}")
            attrs["class"] = (
                f"transition trigger-{kind} event-{css_name(trigger)} "
                f"from-{css_name(shown)} to-{css_name(drawn)}"
            )
            self.connect(source, target, attrs, kind, trigger, text, also)

    def connect(
        self,
        source: str,
        target: str,
        attrs: dict[str, str],
        kind: EdgeKind,
        trigger: str,
        text: str,
        also: tuple[str, ...],
    ) -> None:
        """An edge from what is drawn for `source` to what is drawn for `target`, at the edge
        of a box it leaves or enters; one edge for a transition drawn twice from a box."""
        shown, drawn = self.nesting.box_of(source), self.nesting.box_of(target)
        if self.nesting.shown:  # a collapsed drawing: one edge per box, trigger and label
            key = (shown, drawn, trigger, text)
            if key in self.merged:
                return
            self.merged.add(key)
        if attrs["id"] in self.ids:
            attrs["id"] += f"-{len(self.ids)}"
        self.ids.add(attrs["id"])
        tail, head = self.exit(shown), self.entry(drawn)
        if self.nesting.is_cluster(shown) and not Chart.inside(drawn, shown):
            attrs["ltail"] = cluster_name(shown)
            # A clipped edge out of a cluster is short; one more rank keeps its label outside.
            attrs["minlen"] = "2"
        elif drawn == shown:
            # Over the top, where dot keeps the loop's label clear of the loop itself.
            attrs["tailport"] = attrs["headport"] = "n"
        if self.nesting.is_cluster(drawn) and head != tail and not Chart.inside(shown, drawn):
            attrs["lhead"] = cluster_name(drawn)
        self.edges.append(Edge(tail, head, attrs, kind, shown, trigger, drawn, text, also))

    def target(self, source: str, transition: Transition) -> str:
        found = self.chart.target(source, transition)
        if found is None:  # a definition that loaded has none of these; draw it as written
            return join(self.chart.parent(source), transition.target or "")
        return found

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
        """The node an edge into `path` goes to (clipped at the box's edge if it is one)."""
        if not self.nesting.is_cluster(path):
            return path
        return entry_name(path) if self.chart.is_parallel(path) else initial_name(path)

    def exit(self, path: str) -> str:
        return exit_name(path) if self.nesting.is_cluster(path) else path


def _leaves(owner: Owner) -> bool:
    """Whether `owner` has a transition to another node (so its box needs a place to leave)."""
    return any(transition.target is not None for _, transition in owner.all_transitions())


def _layout_edge(tail: str, head: str, target: str, attrs: dict[str, str] | None = None) -> Edge:
    """An edge no transition stands for: a start arrow, or (without `attrs`) an invisible one
    that keeps a parallel state's branches between its entry and exit anchors."""
    return Edge(tail, head, attrs or {"style": "invis"}, "initial", None, None, target)
