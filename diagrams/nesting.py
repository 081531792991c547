"""How deep a drawing goes: which compound and parallel states are drawn as boxes around their
children, and which are collapsed into one box that stands for everything inside them.

Levels count states, not regions: the top-level states are at level 0, the children of a
top-level compound state (or the states of a top-level parallel state's branches) at level 1.
With `depth` N, a compound or parallel state at level N is drawn as one box, and every node
inside it is drawn as that box. Without a depth, nothing is collapsed.
"""

from __future__ import annotations

from statemachines.chart import TOP, Chart
from statemachines.errors import RenderError

MAX_DEPTH = 1_000


def checked_depth(depth: object) -> int | None:
    """`depth` as a level count (None: no limit); RenderError for anything else."""
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise RenderError(
            f"depth {depth!r} is not a nesting level: give a whole number from 0 to {MAX_DEPTH:,} "
            f"(0 draws only the top-level states)"
        )
    return depth


class Nesting:
    """The clusters and the collapsed boxes of one drawing of `chart`."""

    def __init__(self, chart: Chart, depth: int | None = None) -> None:
        self.chart = chart
        self.depth = checked_depth(depth)
        self.collapsed: set[str] = set()
        self.shown: dict[str, str] = {}  # a hidden node's path -> the collapsed box drawn for it
        if self.depth is not None:
            self._collapse(TOP, 0, self.depth)

    def _collapse(self, container: str, level: int, depth: int) -> None:
        for child in self.chart.children.get(container, ()):
            if child in self.chart.branches:
                self._collapse(child, level, depth)  # a branch is no level of its own
            elif self.has_children(child):
                if level >= depth:
                    self.collapsed.add(child)
                    for inner in self.chart.below(child):
                        self.shown[inner] = child
                else:
                    self._collapse(child, level + 1, depth)

    def has_children(self, path: str) -> bool:
        """Whether the state at `path` is a compound or a parallel state."""
        state = self.chart.states.get(path)
        return state is not None and (state.region is not None or bool(state.parallel))

    def box_of(self, path: str) -> str:
        """The path of what is drawn for node `path`: itself, or the collapsed box around it."""
        return self.shown.get(path, path)

    def is_cluster(self, path: str) -> bool:
        """Whether node `path` is drawn as a box around its children (a compound or parallel
        state, or a parallel state's branch), neither collapsed nor inside a collapsed box."""
        if path in self.collapsed or path in self.shown:
            return False
        return path in self.chart.branches or self.has_children(path)

    def is_compound(self, path: str) -> bool:
        state = self.chart.states.get(path)
        return state is not None and state.region is not None
