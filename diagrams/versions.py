"""Two versions of a definition in one drawing: the new version's chart with the old one's
removed states and transitions put back, each state and transition styled by what the change
did to it, a legend of the styles, and how many instances of the old version are in each state.

The styles are the constants below (`DIFF_STYLES`), and every state and transition drawn
carries its kind as a class in the SVG (`diff-added`, `diff-removed`, `diff-changed`,
`diff-unchanged`, and `diff-stranded` on a removed state instances are still in), so a page
or a test finds them by class as well as by colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import graphviz

from statemachines import Definition, load
from statemachines.chart import TOP, Chart
from statemachines.diff import DefinitionDiff, TransitionRef, diff_definitions
from statemachines.errors import RenderError

from .dotsource import Styles
from .graph import build_drawing
from .render import DIRECTIONS, render_drawing
from .shapes import (
    FONT,
    INK,
    MUTED,
    WAIT_FILL,
    WAIT_LINE,
    Cluster,
    Direction,
    Drawing,
    Edge,
    Node,
    anchor_attrs,
    css_name,
    entry_name,
    exit_name,
    initial_name,
    shorten,
    small,
)

DIFF_FORMATS = ("svg", "png", "pdf", "dot")
ASPECTS_WIDTH = 40  # the changed aspects named in a state's box; all of them in its tooltip


@dataclass(frozen=True)
class DiffStyle:
    """How one kind of difference is drawn: `colour` of the line, the text and the mark,
    `fill` of a state's box ("" keeps the state's own), a `dashed` or solid line `width`
    points wide, the `mark` before a label, and the `meaning` the legend gives."""

    kind: str
    colour: str
    fill: str
    dashed: bool
    width: str
    mark: str
    meaning: str

    @property
    def css(self) -> str:
        """The class the SVG group of a state or transition of this kind carries."""
        return f"diff-{self.kind}"


ADDED = DiffStyle("added", "#1a7f37", "#dcf5e3", False, "2.6", "+", "added")
REMOVED = DiffStyle("removed", "#cf222e", "#fde7e9", True, "2", "−", "removed (only in the old)")
CHANGED = DiffStyle("changed", "#d97706", "#fff1d6", False, "2.6", "~", "changed: aspects named")
UNCHANGED = DiffStyle("unchanged", "", "", False, "", "", "unchanged")
STRANDED = DiffStyle(
    "stranded", "#a40e26", "#ffc2c7", True, "4", "⚠", "removed, with instances in it"
)
DIFF_STYLES = {style.kind: style for style in (ADDED, REMOVED, CHANGED, UNCHANGED, STRANDED)}


def diff_diagram(
    old: Definition | str | Path,
    new: Definition | str | Path,
    counts: Mapping[str, int] | None = None,
    format: str = "svg",
    *,
    changes: DefinitionDiff | None = None,
    title: str | None = None,
    direction: str = "LR",
    fallback: bool = False,
) -> bytes:
    """Draw version `old` against version `new` of a definition as one picture.

    The picture is `new`'s chart with `old`'s removed states and transitions put back:
    added ones green and bold, removed ones red and dashed, changed ones amber with the
    aspects that changed named, the rest as usual, and a legend. `counts` gives, by state
    path, how many instances of `old` are in each state: shown on the state, and a removed
    state instances are in stands out (`diff-stranded`). `changes` is
    `diff_definitions(old, new)`, worked out when not given; `title` heads the picture.

    `format` is svg, png, pdf or dot; a drawing too large to lay out raises DiagramTooLarge,
    or with `fallback` is an SVG that says so.
    """
    if format not in DIFF_FORMATS:
        raise RenderError(
            f"the drawing of two versions is {', '.join(DIFF_FORMATS)}, not {format!r}"
        )
    if direction not in DIRECTIONS:
        raise RenderError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    before, after = load(old), load(new)
    if changes is None:
        changes = diff_definitions(before, after)
    drawing, styles = diff_drawing(
        before, after, changes, counts or {}, title=title, direction=cast(Direction, direction)
    )
    return render_drawing(drawing, styles, format, fallback=fallback)


def diff_drawing(
    old: Definition,
    new: Definition,
    changes: DefinitionDiff,
    counts: Mapping[str, int],
    *,
    title: str | None = None,
    direction: Direction = "LR",
) -> tuple[Drawing, Styles]:
    """The union of the two charts (see `diff_diagram`) and the styles that mark it."""
    union = Union(old, new, direction)
    union.put_back_removed_nodes()
    removed_edges = union.put_back_edges(changes.transitions_removed)
    marks = Marks(union, counts)
    marks.states(changes)
    marks.edges(changes, removed_edges)
    marks.internals(changes)
    drawing = union.after
    drawing.items.append(legend(direction))
    states = (len(changes.states_added), len(changes.states_removed), len(changes.states_changed))
    moves = (
        len(changes.transitions_added),
        len(changes.transitions_removed),
        len(changes.transitions_changed),
    )
    heading = title or f"{new.name}: old → new"
    summary = (
        f"{heading} · states +{states[0]} −{states[1]} ~{states[2]}"
        f" · transitions +{moves[0]} −{moves[1]} ~{moves[2]}"
    )
    drawing.graph_attrs.update(
        label=graphviz.escape(summary),
        id=f"diff-{css_name(new.name)}",
        **{"class": "turnout-diagram diff-diagram"},
    )
    return drawing, marks.styles


class Union:
    """The drawing of `new` (built afresh, so it may be changed) with the states, branches
    and transitions only `old` has put back in, taken from the drawing of `old`."""

    def __init__(self, old: Definition, new: Definition, direction: Direction) -> None:
        self.before = build_drawing(old, direction)
        self.after = build_drawing(new, direction)
        self.old_chart, self.new_chart = Chart(old), Chart(new)
        self.drawn = len(self.after.edges)  # the edges of `new`; put-back ones follow
        self.names = {item.name for item in _walk(self.after.items)}
        self.old_items = {item.name: item for item in _walk(self.before.items)}
        self.edge_ids = {edge.attrs["id"] for edge in self.after.edges if "id" in edge.attrs}
        self.put_back: set[str] = set()  # paths of the old states and branches put back

    def put_back_removed_nodes(self) -> None:
        """Each state or branch only `old` has, with everything inside it, in the box of its
        parent (or the nearest box around it that `new` still draws), after its sibling."""
        removed = [path for path in self.old_chart.order if not self.new_chart.is_node(path)]
        gone = set(removed)
        for path in removed:
            if Chart.parent(path) in gone:
                continue  # inside a removed state: it comes with it
            before = self.before
            item = before.nodes.get(path) or before.clusters.get(path) or before.branches.get(path)
            if item is None:
                continue
            container = self.container(Chart.parent(path))
            container.insert(self.position(container, path), item)
            for inner in _walk([item]):
                self.names.add(inner.name)
                owner = _path_of(inner)
                if owner is None:
                    continue
                self.put_back.add(owner)
                if isinstance(inner, Node):
                    self.after.nodes[owner] = inner
                elif inner.state is not None:
                    self.after.clusters[owner] = inner
                else:
                    self.after.branches[owner] = inner

    def container(self, path: str) -> list[Node | Cluster]:
        """The items of the box `new` draws for `path`, or for the nearest node around it."""
        while path != TOP:
            box = self.after.clusters.get(path) or self.after.branches.get(path)
            if box is not None:
                return box.items
            path = Chart.parent(path)
        return self.after.items

    def position(self, items: list[Node | Cluster], path: str) -> int:
        """Where `path` goes among `items`: after the nearest sibling before it in `old`."""
        siblings = self.old_chart.children.get(Chart.parent(path), [])
        earlier = siblings[: siblings.index(path)] if path in siblings else []
        for sibling in reversed(earlier):
            for number, item in enumerate(items):
                if _path_of(item) == sibling:
                    return number + 1
        return len(items)

    def put_back_edges(self, removed: Iterable[TransitionRef]) -> dict[int, TransitionRef | None]:
        """Copy into the drawing the edges of `old` that `new` has not: the removed
        transitions, and the start arrows and layout edges of what was put back. Give their
        numbers in the drawing, each with its transition (None: a start or layout edge)."""
        wanted = edges_of(self.before, removed, len(self.before.edges))
        ends = {(edge.tail, edge.head) for edge in self.after.edges}
        copied: dict[int, TransitionRef | None] = {}
        for number, edge in enumerate(self.before.edges):
            ref = wanted.get(number)
            if ref is None and (edge.source is not None or (edge.tail, edge.head) in ends):
                continue
            attrs = dict(edge.attrs)
            for side in ("ltail", "lhead"):
                if attrs.get(side) not in self.names:
                    attrs.pop(side, None)  # a box `new` does not draw
            tail, head = self.end(edge.tail, "ltail", attrs), self.end(edge.head, "lhead", attrs)
            copy = Edge(tail, head, attrs, edge.kind, edge.source, edge.trigger, edge.target)
            copy.text, copy.also = edge.text, edge.also
            if copy.attrs.get("id") in self.edge_ids:
                copy.attrs["id"] += "-old"
            self.edge_ids.add(copy.attrs.get("id", ""))
            copied[len(self.after.edges)] = ref
            self.after.edges.append(copy)
        return copied

    def end(self, name: str, side: str, attrs: dict[str, str]) -> str:
        """The node of the drawing an edge of `old` ending at `name` ends at: `name`, or what
        stands for it when `old` drew that state otherwise (a box for a plain state, the edge
        then clipped at the box (`side`: ltail or lhead, set in `attrs`); a plain state for
        a box)."""
        if name in self.names:
            return name
        old = self.old_items.get(name)
        if isinstance(old, Node) and old.state is not None and old.state in self.after.clusters:
            path = old.state  # a plain state in `old`, a box in `new`: its edge
            box = self.after.clusters[path]
            anchor = exit_name(path)
            if side == "lhead":
                parallel = self.new_chart.is_parallel(path)
                anchor = entry_name(path) if parallel else initial_name(path)
            if anchor not in self.names:
                box.items.append(Node(anchor, anchor_attrs()))
                self.names.add(anchor)
            attrs[side] = box.name
            return anchor
        owner = name.rpartition("/")[0]  # an anchor of a box in `old`: `X/leave`, ...
        if owner in self.after.nodes:
            return self.after.nodes[owner].name
        self.container(owner).append(Node(name, anchor_attrs()))
        self.names.add(name)
        return name


class Marks:
    """The styles that mark the union: each state and transition by its kind of change, the
    instances in each state, and the removed states instances are still in."""

    def __init__(self, union: Union, counts: Mapping[str, int]) -> None:
        self.union = union
        self.drawing = union.after
        self.counts = counts
        self.styles = Styles()

    def states(self, changes: DefinitionDiff) -> None:
        """Every state and branch drawn, by its kind of change (a branch unchanged as such
        is left as it is: its parallel state says that its branches changed)."""
        union = self.union
        kinds = {path: ADDED for path in changes.states_added}
        kinds.update((path, REMOVED) for path in changes.states_removed)
        branches_old, branches_new = union.old_chart.branches, union.new_chart.branches
        kinds.update((path, ADDED) for path in branches_new.keys() - branches_old.keys())
        kinds.update((path, REMOVED) for path in branches_old.keys() - branches_new.keys())
        aspects = {change.path: change.aspects for change in changes.states_changed}
        kinds.update((path, CHANGED) for path in aspects)
        drawing = self.drawing
        items: list[tuple[str, Node | Cluster]] = [*drawing.nodes.items()]
        items += drawing.clusters.items()
        for path, item in items:
            self.state(path, item, kinds.get(path, UNCHANGED), aspects.get(path, ()))
        for path, box in drawing.branches.items():
            if path in kinds:
                self.paint(box, kinds[path], f"branch {path}: {kinds[path].kind}")

    def state(
        self, path: str, item: Node | Cluster, style: DiffStyle, aspects: tuple[str, ...]
    ) -> None:
        """One state: its style, a line naming the change, and its instances (a removed
        state with instances in it is stranded)."""
        count = self.counts.get(path, 0)
        lines = self.styles.lines.setdefault(item.name, [])
        tooltip = f"{path}: {style.kind}"
        if style is CHANGED:
            tooltip = f"{path}: changed: {', '.join(aspects)}"
            lines.append(small(f"~ changed: {shorten(', '.join(aspects), ASPECTS_WIDTH)}"))
        elif style is not UNCHANGED:
            lines.append(small(f"{style.mark} {style.kind}"))
        if style is REMOVED and count > 0:
            style = STRANDED
            tooltip += f"; {count} instance{'s' if count != 1 else ''} still in it"
        if style is not UNCHANGED:
            lines[-1] = small(lines[-1].text, style.colour, 10, bold=True)
        if count > 0:
            text = f"{count} running"
            colour = INK
            if style is STRANDED:
                text, colour = f"⚠ {count} running in a removed state", STRANDED.colour
            lines.append(small(text, colour, 10, bold=True))
        self.paint(item, style, tooltip, " has-instances" if count > 0 else "")
        if style is STRANDED:  # a stranded state is also a removed one
            change = self.styles.nodes[item.name]
            change["class"] = change["class"].replace(STRANDED.css, f"{REMOVED.css} {STRANDED.css}")

    def paint(self, item: Node | Cluster, style: DiffStyle, tooltip: str, extra: str = "") -> None:
        """The attributes that draw `item` in `style`; its class names the kind (and `extra`)."""
        change = {"class": f"{item.attrs.get('class', 'state')} {style.css}{extra}"}
        if style is not UNCHANGED:
            # Dashed means removed: a branch's box, dashed as a rule, is drawn solid otherwise.
            words = [word for word in item.attrs.get("style", "").split(",") if word != "dashed"]
            change |= {
                "color": style.colour,
                "penwidth": style.width,
                "style": ",".join([*words, "dashed"] if style.dashed else words),
                "tooltip": graphviz.escape(tooltip),
            }
            if isinstance(item, Node) or style is not CHANGED:  # a changed box: its line only
                change["fillcolor"] = style.fill
        self.styles.nodes[item.name] = change

    def edges(self, changes: DefinitionDiff, removed: dict[int, TransitionRef | None]) -> None:
        """Every visible edge by its kind of change: the put-back ones (`removed`) removed,
        those of added transitions and new start arrows added, those of changed ones changed."""
        drawing, union = self.drawing, self.union
        added = edges_of(drawing, changes.transitions_added, union.drawn)
        changed = {
            number: change
            for change in changes.transitions_changed
            for number in edges_of(drawing, [change.new], union.drawn)
        }
        old_ends = {(edge.tail, edge.head) for edge in union.before.edges}
        for number, edge in enumerate(drawing.edges):
            if edge.attrs.get("style") == "invis":
                continue
            if number in removed:
                ref = removed[number]
                self.edge(number, REMOVED, f"removed: {ref.label if ref else 'start'}")
            elif number in added or (
                edge.kind == "initial" and (edge.tail, edge.head) not in old_ends
            ):
                ref = added.get(number)
                self.edge(number, ADDED, f"added: {ref.label if ref else 'start'}")
            elif number in changed:
                change = changed[number]
                named = ", ".join(change.aspects)
                if "target" in change.aspects:
                    named += f"; was → {change.old.target or '(internal)'}"
                tooltip = f"changed: {named}: {change.new.label}"
                self.edge(number, CHANGED, tooltip, f" ({named})")
            else:
                self.edge(number, UNCHANGED, "")

    def edge(self, number: int, style: DiffStyle, tooltip: str, note: str = "") -> None:
        """The attributes that draw edge `number` in `style`, its label marked (and `note`)."""
        edge = self.drawing.edges[number]
        change = {"class": f"{edge.attrs.get('class', 'transition')} {style.css}"}
        if style is not UNCHANGED:
            change |= {
                "color": style.colour,
                "fontcolor": style.colour,
                "penwidth": style.width,
                "tooltip": graphviz.escape(tooltip),
                "labeltooltip": graphviz.escape(tooltip),
            }
            if edge.text:  # a start arrow has no label
                change["label"] = graphviz.escape(f"{style.mark} {edge.text}{note}")
            if style.dashed:
                change["style"] = "dashed"
        self.styles.edges[number] = change

    def internals(self, changes: DefinitionDiff) -> None:
        """Transitions that stay in their state are lines in its box: marked there."""
        kinds = [
            (ADDED, self.drawing, changes.transitions_added),
            (CHANGED, self.drawing, [change.new for change in changes.transitions_changed]),
            (REMOVED, self.union.before, changes.transitions_removed),
        ]
        for style, drawing, refs in kinds:
            for ref in refs:
                for inner in drawing.internals:
                    if not _stays(ref, inner.state, inner.trigger, inner.also):
                        continue
                    item = _item(self.drawing, inner.state)
                    if item is None:
                        continue
                    line = small(f"{style.mark} {inner.text}", style.colour, 10, bold=True)
                    if drawing is self.drawing or inner.state in self.union.put_back:
                        self.styles.replace.setdefault(item.name, {})[inner.line] = line
                    else:  # removed from a state still there: a line of its own
                        self.styles.lines.setdefault(item.name, []).append(line)


def edges_of(
    drawing: Drawing, refs: Iterable[TransitionRef], limit: int
) -> dict[int, TransitionRef]:
    """The edges (by number, among the first `limit`) transitions `refs` are drawn as. Of
    transitions alike (one source, trigger and target), the diff adds or removes the last."""
    alike: dict[tuple[str, str, str | None], list[TransitionRef]] = {}
    for ref in refs:
        alike.setdefault((ref.source, ref.trigger, ref.target), []).append(ref)
    found: dict[int, TransitionRef] = {}
    for (source, trigger, target), group in alike.items():
        numbers = [
            number
            for number, edge in enumerate(drawing.edges[:limit])
            if edge.kind != "initial"
            and edge.source == source
            and edge.target == target
            and (edge.trigger == trigger or trigger in edge.also)
        ]
        found.update(zip(numbers[max(0, len(numbers) - len(group)) :], group, strict=False))
    return found


def legend(direction: Direction = "LR") -> Cluster:
    """A box naming each style, drawn in that style, and a line for the transitions: one
    rank of nodes, listed from the top (LR) or from the left (TB)."""
    items: list[Node | Cluster] = []
    for style in DIFF_STYLES.values():
        line = style.colour or WAIT_LINE
        attrs = {
            "id": f"legend-{style.kind}",
            "class": f"legend-item legend-{style.kind}",
            "shape": "box",
            "style": "rounded,filled,dashed" if style.dashed else "rounded,filled",
            "fillcolor": style.fill or WAIT_FILL,
            "color": line,
            "penwidth": style.width or "1",
            "fontname": FONT,
            "fontsize": "10",
            "margin": "0.2,0.06",  # room for a viewer's wider font
            "fontcolor": style.colour or INK,
            "label": f"{style.mark} {style.meaning}".strip(),
            "tooltip": f"{style.kind}: class {style.css}",
        }
        items.append(Node(f"legend/{style.kind}", attrs))
    note = {
        "id": "legend-transitions",
        "class": "legend-item legend-transitions",
        "shape": "plaintext",
        "fontname": FONT,
        "fontsize": "10",
        "fontcolor": MUTED,
        "label": "arrows: the same colours and marks",
    }
    items.append(Node("legend/transitions", note))
    if direction in ("LR", "RL"):  # a rank across the page is drawn bottom up
        items.reverse()
    attrs = {
        "id": "diff-legend",
        "class": "diff-legend",
        "style": "rounded",
        "color": MUTED,
        "fontname": FONT,
        "fontsize": "11",
        "fontcolor": INK,
        "labeljust": "l",
        "margin": "8",
    }
    # A `/` no state path has: the legend's box cannot take the name of a state's.
    return Cluster("cluster_/legend", attrs, items=items, title="Legend")


def _walk(items: Iterable[Node | Cluster]) -> Iterator[Node | Cluster]:
    for item in items:
        yield item
        if isinstance(item, Cluster):
            yield from _walk(item.items)


def _path_of(item: Node | Cluster) -> str | None:
    """The state or branch `item` draws (None: a dot, an anchor, the legend)."""
    if item.state is not None:
        return item.state
    if isinstance(item, Cluster) and item.name.startswith("cluster_") and "class" in item.attrs:
        return item.name.removeprefix("cluster_") if "region" in item.attrs["class"] else None
    return None


def _item(drawing: Drawing, path: str) -> Node | Cluster | None:
    return drawing.nodes.get(path) or drawing.clusters.get(path) or drawing.branches.get(path)


def _stays(ref: TransitionRef, state: str, trigger: str, also: tuple[str, ...]) -> bool:
    """Whether `ref` is the transition drawn as a line of `state` (one that stays in it, or
    enters it again)."""
    return (
        ref.source == state
        and (ref.trigger == trigger or ref.trigger in also)
        and ref.target in (None, state)
    )


__all__ = ["DIFF_STYLES", "DiffStyle", "diff_diagram", "diff_drawing"]
