"""Mermaid `stateDiagram-v2` text of a definition, which GitHub and many wikis render inline.

Parallel states become composite states with one `--` separated part per region, compound
states composite states holding their children, history states states named H or H*. A
transition is written in the innermost composite state holding both its ends.
"""

from __future__ import annotations

import re

from statemachines import Definition
from statemachines.chart import TOP, Chart
from statemachines.model import Region, State, Transition, join

from .graph import cached_drawing
from .nesting import Nesting
from .overlay import HEAT, HeatOverlay, InstanceOverlay, Overlay, find_edge
from .shapes import GUARD_WIDTH, caught, duration, foreach_label, retry_mark, shorten

INDENT = "    "
KEYWORDS = frozenset(
    "state end direction note class classdef click style as left right of "
    "stateDiagram stateDiagram-v2".split()
)
CLASSES = {
    "succeeded": "fill:#e3f4e6,stroke:#2e7d32,color:#1b5e20",
    "failed": "fill:#fdeaea,stroke:#c62828,color:#8e1c1c",
    "task": "fill:#e8f0fe,stroke:#3f5f8f",
    "foreach": "fill:#efe8fb,stroke:#5e4596",
    "active": "fill:#ffd54f,stroke:#b26a00,stroke-width:3px",
    "visited": "fill:#fff6d8,stroke:#b26a00",
    **{f"heat{level}": f"fill:{HEAT[level]}" for level in range(1, 6)},
}


def to_mermaid(
    definition: Definition,
    *,
    overlay: Overlay | None = None,
    direction: str = "LR",
    depth: int | None = None,
) -> str:
    """The `stateDiagram-v2` text of `definition`, with `overlay` marked by classes and labels;
    with `depth`, compound and parallel states nested that deep are one state each."""
    return _Writer(definition, overlay, direction, depth).text()


class _Writer:
    def __init__(
        self, definition: Definition, overlay: Overlay | None, direction: str, depth: int | None
    ) -> None:
        self.definition = definition
        self.overlay = overlay
        self.chart = Chart(definition)
        self.nesting = Nesting(self.chart, depth)
        self.ids: dict[str, str] = {}
        self.classes: dict[str, list[str]] = {}
        self.steps: dict[tuple[str, str, str], list[int]] = {}
        self.pending: dict[str, list[str]] = {}  # transitions for an outer block, by its path
        self.merged: set[tuple[str, str, str]] = set()  # transitions out of collapsed states
        for state in definition.walk():
            if state.path not in self.nesting.shown:
                self.ids[state.path] = self.unique_id(state.path)
        self.lines = [
            "stateDiagram-v2",
            f"{INDENT}direction {direction}",
            f"{INDENT}%% {definition.name}",
        ]
        if isinstance(overlay, InstanceOverlay):
            self.number_steps(overlay)

    def unique_id(self, path: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", path.replace(".", "__"))
        if base in KEYWORDS or base.lower() in KEYWORDS:
            base = f"{base}_state"
        candidate, counter = base, 2
        while candidate in self.ids.values():
            candidate, counter = f"{base}_{counter}", counter + 1
        return candidate

    def number_steps(self, overlay: InstanceOverlay) -> None:
        drawing = cached_drawing(self.definition, depth=self.nesting.depth)
        for number, (event, source, target) in enumerate(overlay.path, 1):
            index = find_edge(drawing, source, event, target)
            if index is not None and source is not None:
                edge = drawing.edges[index]
                key = (edge.source or source, edge.trigger or "", edge.target)
                self.steps.setdefault(key, []).append(number)

    def text(self) -> str:
        self.region(self.definition.root, 1)
        self.mark_overlay()
        for name, style in CLASSES.items():
            self.lines.append(f"{INDENT}classDef {name} {style}")
        for name, members in self.classes.items():
            self.lines.append(f"{INDENT}class {','.join(members)} {name}")
        return "\n".join(self.lines) + "\n"

    # -- structure ------------------------------------------------------------------------
    def region(self, region: Region, depth: int) -> None:
        pad = INDENT * depth
        for state in region.states:
            self.declare(state, depth)
        self.lines.append(f"{pad}[*] --> {self.ids[join(region.path, region.initial)]}")
        for state in region.states:
            self.transitions(state, region.path, pad)
            if state.is_final:
                self.lines.append(f"{pad}{self.ids[state.path]} --> [*]")
        for line in self.pending.pop(region.path, []):
            self.lines.append(f"{pad}{line}")

    def declare(self, state: State, depth: int) -> None:
        pad, sid = INDENT * depth, self.ids[state.path]
        collapsed = state.path in self.nesting.collapsed
        if state.kind == "history":
            self.lines.append(f'{pad}state "{"H*" if state.history == "deep" else "H"}" as {sid}')
        elif sid != state.name:
            self.lines.append(f'{pad}state "{state.name}" as {sid}')
        if state.kind == "choice":
            self.lines.append(f"{pad}state {sid} <<choice>>")
        elif state.parallel and not collapsed:
            self.lines.append(f"{pad}state {sid} {{")
            for number, child in enumerate(state.parallel):
                if number:
                    self.lines.append(f"{pad}{INDENT}--")
                self.region(child, depth + 1)
                self.transitions(child, child.path, pad + INDENT)
            self.lines.append(f"{pad}}}")
        elif state.region is not None and not collapsed:
            self.lines.append(f"{pad}state {sid} {{")
            self.region(state.region, depth + 1)
            self.lines.append(f"{pad}}}")
        elif collapsed:
            for path in self.chart.below(state.path):
                owner = self.chart.states.get(path) or self.chart.branches[path]
                self.transitions(owner, self.chart.parent(state.path), pad)
        for line in self.description(state):
            self.lines.append(f"{pad}{sid} : {line}")
        if state.final is not None:
            self.classes.setdefault(state.final, []).append(sid)
        elif state.kind in ("task", "foreach"):
            self.classes.setdefault(state.kind, []).append(sid)
        elif state.kind == "call":
            self.classes.setdefault("task", []).append(sid)

    def description(self, state: State) -> list[str]:
        lines: list[str] = []
        task, call = state.task, state.call
        if state.foreach is not None:
            lines.append(_clean(foreach_label(state.foreach)))
            task, call = state.foreach.task, state.foreach.call
        if call is not None:
            pinned = f" v{call.version}" if call.version is not None else ""
            lines.append(_clean(f"call {call.definition}{pinned}"))
        if task is not None:
            marks = [task.name]
            retries = retry_mark(task.retry)
            if retries:
                marks.append(retries)
            if task.timeout is not None:
                marks.append(f"timeout {duration(task.timeout)}")
            lines.append(_clean(", ".join(marks)))
            if task.compensate:
                lines.append(_clean(f"undo {task.compensate}"))
        if state.final is not None:
            named = f" ({_clean(shorten(state.error.type, 34))})" if state.error else ""
            lines.append(f"final, {state.final}{named}")
        if state.parallel:
            lines.append("parallel, every branch")
        if state.path in self.nesting.collapsed:
            inside = [self.chart.states.get(path) for path in self.chart.below(state.path)]
            count = sum(1 for inner in inside if inner is not None and inner.kind != "history")
            lines.append(f"{count} states inside")
        if state.kind == "history":
            lines.append(f"{state.history} history")
        return lines

    def transitions(self, owner: State | Region, container: str, pad: str) -> None:
        """Write the transitions of `owner` (a state, or a parallel state's branch): here if
        both ends are inside `container`, else in the block of the innermost state holding
        both. Those of the states inside a collapsed state leave that state."""
        source = self.nesting.box_of(owner.path)
        if source in self.chart.branches:  # a branch speaks through its parallel state
            source = self.chart.parent(source)
        groups: list[tuple[str, str, tuple[Transition, ...]]] = [
            (event, event, transitions) for event, transitions in owner.on
        ]
        groups += [(timer.event, timer.name, timer.transitions) for timer in owner.after]
        groups.append(("always", "", owner.always))
        if isinstance(owner, State) and owner.default is not None:
            groups.append(("default", "default", (owner.default,)))
        for trigger, name, transitions in groups:
            guarded = any(t.guard is not None for t in transitions)
            for transition in transitions:
                target = self.target(owner.path, transition)
                if source != owner.path and target == source and transition.target is not None:
                    continue  # inside a collapsed state
                if source != owner.path and transition.target is None:
                    continue
                guard = caught(transition) or (transition.guard.text if transition.guard else None)
                guard = guard or ("else" if guarded else None)
                label = f"{name} [{shorten(guard, GUARD_WIDTH)}]".strip() if guard else name
                if transition.target is None:
                    keys = ", ".join(key for key, _ in transition.assign)
                    label = f"{label} / set {keys}".strip()
                if self.nesting.shown:  # collapsed: one line per state, target and label
                    if (source, target, label) in self.merged:
                        continue
                    self.merged.add((source, target, label))
                label = self.numbered(source, trigger, target, label, name)
                suffix = f" : {_clean(label)}" if label else ""
                line = f"{self.ids[source]} --> {self.ids[target]}{suffix}"
                block = self.block(source, target)
                if block == container:
                    self.lines.append(f"{pad}{line}")
                else:
                    self.pending.setdefault(block, []).append(line)

    def target(self, source: str, transition: Transition) -> str:
        """The state drawn for where `transition` of node `source` goes (itself if nowhere)."""
        if transition.target is None:
            found: str | None = source
        else:
            found = self.chart.target(source, transition)
            if found is None:  # a definition that loaded has none of these
                found = join(self.chart.parent(source), transition.target)
        path = self.nesting.box_of(found or source)
        while path not in self.ids and path:
            path = self.chart.parent(path)  # a branch: its parallel state
        return path

    def block(self, source: str, target: str) -> str:
        """The innermost node holding both `source` and `target` (TOP: the whole chart)."""
        for container in self.chart.ancestors(source):
            if Chart.inside(target, container):
                return container
        return TOP

    def numbered(self, source: str, trigger: str, target: str, label: str, name: str) -> str:
        if isinstance(self.overlay, InstanceOverlay):
            numbers = self.steps.pop((source, trigger, target), [])
            if numbers:
                return f"({', '.join(map(str, numbers))}) {label}".strip()
        if isinstance(self.overlay, HeatOverlay):
            event = None if trigger == "always" else trigger
            keys = [(source, event, target)]
            if trigger.startswith("after:"):
                keys.append((source, name, target))  # a timer's history name: `after 2d`
            count = sum(self.overlay.edges.get(key, 0) for key in keys)
            if count:
                return f"{label} ×{count}".strip()
        return label

    # -- overlay --------------------------------------------------------------------------
    def mark_overlay(self) -> None:
        overlay = self.overlay
        composite = {
            state.path for state in self.definition.walk() if self.nesting.is_cluster(state.path)
        }
        box_of = self.nesting.box_of
        if isinstance(overlay, InstanceOverlay):
            visited = {box_of(s) for step in overlay.path for s in step[1:] if s}
            last = overlay.path[-1][2] if overlay.path else None
            active = {box_of(path) for path in overlay.active} or (
                {box_of(last)} if last else set()
            )
            for name, members in (("visited", visited - active), ("active", active)):
                for path in sorted(members):
                    if path in self.ids and path not in composite:
                        self.classes.setdefault(name, []).append(self.ids[str(path)])
            self.lines.append(f"{INDENT}%% instance {overlay.status}")
            if overlay.status in ("failed", "cancelled", "compensating"):
                for path in sorted(p for p in active if p in self.ids):
                    self.lines.append(f"{INDENT}{self.ids[str(path)]} : instance {overlay.status}")
        elif isinstance(overlay, HeatOverlay):
            counts: dict[str, int] = {}
            for path, count in overlay.counts.items():
                counts[box_of(path)] = counts.get(box_of(path), 0) + count
            most = max(counts.values(), default=0)
            for path, count in counts.items():
                if path in self.ids and count > 0:
                    level = 1 + (count * 4) // max(most, 1)
                    self.lines.append(f"{INDENT}{self.ids[path]} : {count} here")
                    if path not in composite:
                        self.classes.setdefault(f"heat{min(level, 5)}", []).append(self.ids[path])


def _clean(text: str) -> str:
    """Label text Mermaid reads literally: no statement separators or comment marks."""
    text = text.replace(";", ",").replace("#", " ").replace("%%", "%").replace(":", " ")
    return text.replace("{", "(").replace("}", ")").replace("-->", "->").replace('"', "'")
