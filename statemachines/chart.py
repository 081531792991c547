"""The shape of a definition as a statechart: every node by its full name, who holds whom,
document order, and what a transition's target names.

A node is a state (a history pseudo-state included) or a region of a parallel state; a
compound state and the region of its children share one path. Paths nest by `.`, so a
node's parent is its path's prefix ('' is the top level). Built once per definition; read
by the validator, the compiler and the diagrams.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import SEPARATOR, Definition, Reactions, Region, State, Transition

TOP = ""


@dataclass(frozen=True)
class Resolved:
    """What a target names: `path` when it names one node, else the `candidates` (none: no
    such name; several: a bare name that is ambiguous)."""

    path: str | None
    candidates: tuple[str, ...] = ()


class Chart:
    """The nodes of one definition, and the rules that relate them."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.states: dict[str, State] = {}
        self.branches: dict[str, Region] = {}  # a parallel state's regions, by path
        self.children: dict[str, list[str]] = {TOP: []}  # a container's nodes, in order
        self.named: dict[str, dict[str, str]] = {}  # a container's nodes by name
        self.initial: dict[str, str] = {}  # a container's initial child (a full path)
        self.order: dict[str, int] = {}  # document order: ancestors before descendants
        self.by_name: dict[str, list[str]] = {}
        self.histories: dict[str, list[str]] = {}  # a container's history pseudo-states
        self._add_region(definition.root, TOP)

    def _add_region(self, region: Region, container: str) -> None:
        if region.initial:
            self.initial[container] = join(container, region.initial)
        for state in region.states:
            self.states[state.path] = state
            self._node(state.path, state.name, container)
            if state.kind == "history":
                self.histories.setdefault(container, []).append(state.path)
            if state.region is not None:
                self.children.setdefault(state.path, [])
                self._add_region(state.region, state.path)
            for branch in state.parallel:
                self.branches[branch.path] = branch
                self.children.setdefault(state.path, [])
                self._node(branch.path, branch.name, state.path)
                self.children.setdefault(branch.path, [])
                self._add_region(branch, branch.path)

    def _node(self, path: str, name: str, container: str) -> None:
        self.order[path] = len(self.order)
        self.children.setdefault(container, []).append(path)
        self.named.setdefault(container, {}).setdefault(name, path)
        self.by_name.setdefault(name, []).append(path)

    # -- what a node is ---------------------------------------------------------------------
    def node(self, path: str) -> Reactions:
        """The state or parallel region at `path`; KeyError if there is none."""
        return self.states.get(path) or self.branches[path]

    def is_node(self, path: str) -> bool:
        return path in self.states or path in self.branches

    def is_parallel(self, path: str) -> bool:
        state = self.states.get(path)
        return state is not None and bool(state.parallel)

    def is_compound(self, path: str) -> bool:
        """A node whose children are entered one at a time: the top level, a compound
        state, or a parallel state's region."""
        if path == TOP or path in self.branches:
            return True
        state = self.states.get(path)
        return state is not None and state.region is not None

    @staticmethod
    def parent(path: str) -> str:
        return path.rpartition(SEPARATOR)[0]

    def ancestors(self, path: str) -> list[str]:
        """The nodes holding `path`, innermost first (the top level not included)."""
        found = []
        current = self.parent(path)
        while current:
            found.append(current)
            current = self.parent(current)
        return found

    def below(self, path: str) -> list[str]:
        """Every node inside the node at `path`, in document order."""
        found = []
        for child in self.children.get(path, ()):
            found.append(child)
            found.extend(self.below(child))
        return found

    @staticmethod
    def inside(path: str, container: str) -> bool:
        """Whether `path` lies (strictly) inside `container`."""
        return container == TOP or path.startswith(container + SEPARATOR)

    def apart(self, paths: list[str]) -> tuple[str, str] | None:
        """Two of the states at `paths` that cannot be active together (one holds the other,
        or the innermost node holding both enters one child at a time); None when all can."""
        for index, one in enumerate(paths):
            for other in paths[index + 1 :]:
                if one == other or self.inside(one, other) or self.inside(other, one):
                    return one, other
                common = self.parent(one)
                while common and not self.inside(other, common):
                    common = self.parent(common)
                if not self.is_parallel(common):
                    return one, other
        return None

    # -- what a target names ----------------------------------------------------------------
    def resolve(self, source: str, target: str) -> Resolved:
        """The node `target` names for a transition of the node at `source`: a full dotted
        name, or a bare name — the nearest node of that name looking outward from `source`
        (its siblings, then its parent's, and so on), else the only one anywhere."""
        if SEPARATOR in target:
            return Resolved(target if self.is_node(target) else None)
        container = self.parent(source)
        while True:
            path = self.named.get(container, {}).get(target)
            if path is not None:
                return Resolved(path)
            if container == TOP:
                break
            container = self.parent(container)
        found = tuple(self.by_name.get(target, ()))
        return Resolved(found[0] if len(found) == 1 else None, found)

    def target(self, source: str, transition: Transition) -> str | None:
        """The full path `transition` of the node at `source` goes to (None: internal, or
        a target validation reports)."""
        if transition.target is None:
            return None
        return self.resolve(source, transition.target).path


def join(container: str, name: str) -> str:
    return f"{container}{SEPARATOR}{name}" if container else name
