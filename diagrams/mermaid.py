"""Mermaid `stateDiagram-v2` text of a definition, which GitHub and many wikis render inline.

Parallel states become composite states with one `--` separated part per region.
"""

from __future__ import annotations

import re

from statemachines import Definition
from statemachines.model import Region, State, Transition, join

from .graph import cached_drawing
from .overlay import HEAT, HeatOverlay, InstanceOverlay, Overlay, find_edge
from .shapes import GUARD_WIDTH, duration, shorten

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
    definition: Definition, *, overlay: Overlay | None = None, direction: str = "LR"
) -> str:
    """The `stateDiagram-v2` text of `definition`, with `overlay` marked by classes and labels."""
    return _Writer(definition, overlay, direction).text()


class _Writer:
    def __init__(self, definition: Definition, overlay: Overlay | None, direction: str) -> None:
        self.definition = definition
        self.overlay = overlay
        self.ids: dict[str, str] = {}
        self.classes: dict[str, list[str]] = {}
        self.steps: dict[tuple[str, str, str], list[int]] = {}
        for state in definition.walk():
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
        drawing = cached_drawing(self.definition)
        for number, (event, source, target) in enumerate(overlay.path, 1):
            index = find_edge(drawing, source, event, target)
            if index is not None and source is not None:
                edge = drawing.edges[index]
                key = (source, edge.trigger or "", edge.target)
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
            self.transitions(state, region, pad)
            if state.is_final:
                self.lines.append(f"{pad}{self.ids[state.path]} --> [*]")

    def declare(self, state: State, depth: int) -> None:
        pad, sid = INDENT * depth, self.ids[state.path]
        if sid != state.name:
            self.lines.append(f'{pad}state "{state.name}" as {sid}')
        if state.kind == "choice":
            self.lines.append(f"{pad}state {sid} <<choice>>")
        elif state.parallel:
            self.lines.append(f"{pad}state {sid} {{")
            for number, child in enumerate(state.parallel):
                if number:
                    self.lines.append(f"{pad}{INDENT}--")
                self.region(child, depth + 1)
            self.lines.append(f"{pad}}}")
        for line in self.description(state):
            self.lines.append(f"{pad}{sid} : {line}")
        if state.final is not None:
            self.classes.setdefault(state.final, []).append(sid)
        elif state.kind in ("task", "foreach"):
            self.classes.setdefault(state.kind, []).append(sid)

    def description(self, state: State) -> list[str]:
        lines: list[str] = []
        task = state.task
        if state.foreach is not None:
            each = state.foreach
            limit = f", {each.concurrency} at a time" if each.concurrency else ""
            lines.append(_clean(f"for each in {shorten(each.items.text, 34)}{limit}"))
            task = each.task
        if task is not None:
            marks = [task.name]
            if task.retry.attempts > 1:
                marks.append(f"{task.retry.attempts} attempts")
            if task.timeout is not None:
                marks.append(f"timeout {duration(task.timeout)}")
            lines.append(_clean(", ".join(marks)))
            if task.compensate:
                lines.append(_clean(f"undo {task.compensate}"))
        if state.final is not None:
            lines.append(f"final, {state.final}")
        if state.parallel:
            lines.append("parallel, every branch")
        return lines

    def transitions(self, state: State, region: Region, pad: str) -> None:
        sid = self.ids[state.path]
        groups: list[tuple[str, str, tuple[Transition, ...]]] = [
            (event, event, transitions) for event, transitions in state.on
        ]
        groups += [(timer.event, f"after {timer.key}", timer.transitions) for timer in state.after]
        groups.append(("always", "", state.always))
        for trigger, name, transitions in groups:
            guarded = any(t.guard is not None for t in transitions)
            for transition in transitions:
                target = (
                    state.path
                    if transition.target is None
                    else join(region.path, transition.target)
                )
                guard = transition.guard.text if transition.guard is not None else None
                guard = guard or ("else" if guarded else None)
                label = f"{name} [{shorten(guard, GUARD_WIDTH)}]".strip() if guard else name
                if transition.target is None:
                    keys = ", ".join(key for key, _ in transition.assign)
                    label = f"{label} / set {keys}".strip()
                label = self.numbered(state.path, trigger, target, label)
                suffix = f" : {_clean(label)}" if label else ""
                self.lines.append(f"{pad}{sid} --> {self.ids[target]}{suffix}")

    def numbered(self, source: str, trigger: str, target: str, label: str) -> str:
        if isinstance(self.overlay, InstanceOverlay):
            numbers = self.steps.pop((source, trigger, target), [])
            if numbers:
                return f"({', '.join(map(str, numbers))}) {label}".strip()
        if isinstance(self.overlay, HeatOverlay):
            event = None if trigger == "always" else trigger
            keys = [(source, event, target)]
            if trigger.startswith("after:"):
                keys.append((source, f"after {trigger[6:]}", target))
            count = sum(self.overlay.edges.get(key, 0) for key in keys)
            if count:
                return f"{label} ×{count}".strip()
        return label

    # -- overlay --------------------------------------------------------------------------
    def mark_overlay(self) -> None:
        overlay = self.overlay
        composite = {state.path for state in self.definition.walk() if state.parallel}
        if isinstance(overlay, InstanceOverlay):
            visited = {s for step in overlay.path for s in step[1:] if s}
            last = overlay.path[-1][2] if overlay.path else None
            active = set(overlay.active) or ({last} if last else set())
            for name, members in (("visited", visited - active), ("active", active)):
                for path in sorted(members):
                    if path in self.ids and path not in composite:
                        self.classes.setdefault(name, []).append(self.ids[str(path)])
            self.lines.append(f"{INDENT}%% instance {overlay.status}")
            if overlay.status in ("failed", "cancelled", "compensating"):
                for path in sorted(p for p in active if p in self.ids):
                    self.lines.append(f"{INDENT}{self.ids[str(path)]} : instance {overlay.status}")
        elif isinstance(overlay, HeatOverlay):
            most = max(overlay.counts.values(), default=0)
            for path, count in overlay.counts.items():
                if path in self.ids and count > 0:
                    level = 1 + (count * 4) // max(most, 1)
                    self.lines.append(f"{INDENT}{self.ids[path]} : {count} here")
                    if path not in composite:
                        self.classes.setdefault(f"heat{min(level, 5)}", []).append(self.ids[path])


def _clean(text: str) -> str:
    """Label text Mermaid reads literally: no statement separators or comment marks."""
    text = text.replace(";", ",").replace("#", " ").replace("%%", "%").replace(":", " ")
    return text.replace("{", "(").replace("}", ")").replace("-->", "->").replace('"', "'")
