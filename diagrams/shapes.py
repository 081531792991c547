"""What a drawing is made of: the palette, nodes, clusters and edges, and the names and label
lines they are given.

A `Drawing` is plain data (names, attributes, labels): `graph` builds it, overlays restyle it,
`dotsource` writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from statemachines.durations import format_duration
from statemachines.model import CallSpec, Foreach, Retry, TaskSpec, Transition

Direction = Literal["LR", "TB", "RL", "BT"]
EdgeKind = Literal["initial", "event", "done", "failed", "timer", "always"]
FONT = "Helvetica"
GUARD_WIDTH = 30
RETRY_MARK_WIDTH = 44  # a task's retry policies by type, in its box
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
COMPOUND_FILL, COMPOUND_LINE = "#fbfbfb", "#555555"
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
    """A parallel or compound state (or a parallel state's branch) drawn as a box around its
    states."""

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
    clusters: dict[str, Cluster]  # by state path, for parallel and compound states
    internals: list[Internal] = field(default_factory=list)
    by_ends: dict[tuple[str | None, str], list[int]] = field(default_factory=dict)
    branches: dict[str, Cluster] = field(default_factory=dict)  # parallel branches, by path
    shown: dict[str, str] = field(default_factory=dict)  # a collapsed node -> the box drawn

    def drawn(self, path: str) -> str:
        """The path of what stands for node `path`: itself, or the collapsed box around it."""
        return self.shown.get(path, path)

    def ancestors(self, path: str) -> list[str]:
        """`path` as drawn and the compound and parallel states drawn around it, innermost
        first (a parallel state's branches are not states)."""
        found = [self.drawn(path)]
        parts = found[0].split(".")
        for size in range(len(parts) - 1, 0, -1):
            outer = ".".join(parts[:size])
            if outer in self.clusters:
                found.append(outer)
        return found

    def __post_init__(self) -> None:
        for number, edge in enumerate(self.edges):
            if edge.attrs.get("style") != "invis":
                self.by_ends.setdefault((edge.source, edge.target), []).append(number)


# -- labels and names -----------------------------------------------------------------------
# Where a call state's box links to: the called definition's diagram, by the HTTP API's route
# (a path on the server that serves the diagram).
CALL_LINK = "/api/definitions/{name}/diagram.svg"


def call_lines(call: CallSpec) -> list[Line]:
    """The called definition (and its version when pinned), then the call's timeout."""
    pinned = f" v{call.version}" if call.version is not None else ""
    lines = [small(f"⤷ call {call.definition}{pinned}", "#1f3b63")]
    if call.timeout is not None:
        lines.append(small(f"timeout {duration(call.timeout)}", MUTED, 9))
    return lines


def task_lines(task: TaskSpec) -> list[Line]:
    """The task name, then small marks for retries, timeout and compensation."""
    lines = [small(task.name, "#1f3b63")]
    marks = []
    retries = retry_mark(task.retry)
    if retries:
        marks.append(f"↻ {retries}")
    if task.timeout is not None:
        marks.append(f"timeout {duration(task.timeout)}")
    if marks:
        lines.append(small(" · ".join(marks), MUTED, 9))
    if task.compensate:
        lines.append(small(f"↶ undo: {task.compensate}", "#8a4b08", 9))
    return lines


def foreach_label(each: Foreach) -> str:
    """`for each in ITEMS`, with the concurrency and the tolerated failures when written."""
    label = f"for each in {shorten(each.items.text, 34)}"
    if each.concurrency:
        label += f", {each.concurrency} at a time"
    if each.tolerate is not None:
        label += f", tolerate {each.tolerate.label}"
    return label


def retry_mark(retry: Retry) -> str | None:
    """How a task is retried, in short: `3 attempts` for one policy for every error type;
    by type, each policy's attempts (`Timeout ×4, Refused ×1, others ×2`). None: no retry."""
    if not retry.typed:
        attempts = retry.policies[0].attempts
        return f"{attempts} attempts" if attempts > 1 else None
    parts = [
        f"{'/'.join(policy.errors) if policy.errors else 'others'} ×{policy.attempts}"
        for policy in retry.policies
    ]
    return shorten(", ".join(parts), RETRY_MARK_WIDTH)


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


def caught(transition: Transition) -> str | None:
    """How an edge of the by-type `failed` form is labelled: its error type (`Timeout`),
    or `other errors` for the catch-all; None for any other transition."""
    if transition.catch is None:
        return None
    return "other errors" if transition.catch == "*" else transition.catch
