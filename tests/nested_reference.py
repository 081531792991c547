"""An independent reference model of the statechart semantics, run over the tree of
`nested_charts` (no part of `statemachines` is used):

- an external event is offered innermost first: to the active child of a compound node
  (recursively) before the node itself; to each region of a parallel state in document
  order, then — only if no region took it — to the parallel state itself. A node takes
  the event with its first transition for it whose guard holds.
- a transition with a target exits every active node inside its domain (the innermost
  compound node — the top level, a compound state, a region — strictly holding the source
  and holding the target), innermost first, keeping what the history pseudo-states of the
  exited compound nodes remember; then enters from the domain down to the target (the
  initial child of a compound node off the path, every region of a parallel state; for a
  history pseudo-state, what it remembers, else its default, else its parent's initial).
- while an event is offered to the regions of a parallel state, a transition whose domain
  holds, equals or lies inside the domain of one taken earlier does not fire, and the node
  that chose it has still taken the event (SCXML: the earlier transition preempts it; see
  `Reference`); a region is not offered the event once an earlier one left the parallel
  state.
- entering a final state queues `done` for its compound state (`failed` for `final:
  failed`), or `done` for its parallel state once every region is in a final state
  (`failed` at once for `final: failed`); at the top level it ends the instance. Queued
  events are handled after the event's transitions, in order, each only if its node has
  not been left (or left and entered again) since. `done` is for the node only; `failed`
  goes to the node, then outward to the first node around it with a `failed` transition,
  else the instance fails and leaves every state.
"""

from __future__ import annotations

from collections import deque

from nested_charts import CONTAINERS, Chart, Edge, Node

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


class Reference:
    """One instance of `chart`, started. With `preempted_takes_the_event` False, a node whose
    transition an earlier region's preempted has not taken the event, and the nodes around it
    inside its region are offered it (as statemachines/run.py does today; SCXML: True)."""

    def __init__(self, chart: Chart, preempted_takes_the_event: bool = True) -> None:
        self.chart = chart
        self.preempted_takes_the_event = preempted_takes_the_event
        self.active: dict[Node, int] = {}  # active states -> when each was entered
        self.entries = 0
        self.memory: dict[Node, list[Node]] = {}  # history pseudo-state -> what it restores
        self.status = RUNNING
        self.trace: list[str] = []
        self.queue: deque[tuple[str, Node, int]] = deque()
        self.taken: list[Node] | None = None  # domains taken while offering to regions
        assert chart.top.initial is not None
        self.enter(chart.top, [chart.top.initial])
        self.drain()

    # -- what is active ---------------------------------------------------------------------
    def atomic(self) -> list[str]:
        """The full names of the active states with no active state inside, sorted."""
        leaves = [node for node in self.active if not any(node.contains(o) for o in self.active)]
        return sorted(node.path for node in leaves)

    def entry(self, node: Node) -> int | None:
        """When the node was entered (a region: its parallel state); None if not active."""
        if node.kind == "top":
            return 0
        if node.kind == "region":
            assert node.parent is not None
            return self.active.get(node.parent)
        return self.active.get(node)

    def active_child(self, container: Node) -> Node | None:
        return next((child for child in container.children if child in self.active), None)

    # -- an external event ------------------------------------------------------------------
    def send(self, event: str) -> bool:
        """Handle an external event; False if it is rejected (nothing changed)."""
        if self.status != RUNNING or not self.offer(self.chart.top, event):
            return False
        self.drain()
        return True

    def offer(self, node: Node, event: str) -> bool:
        if node.kind == "parallel":
            entered = self.active[node]
            outer = self.taken
            if self.taken is None:
                self.taken = []
            taken = False
            for region in node.children:
                if self.active.get(node) != entered:
                    break  # an earlier region left the parallel state
                taken = self.offer(region, event) or taken
            self.taken = outer
            return taken or self.take(node, event)
        if node.kind in CONTAINERS:
            child = self.active_child(node)
            if child is not None and self.offer(child, event):
                return True
        return self.take(node, event)

    def take(self, node: Node, event: str) -> bool:
        """Fire the node's first transition for `event` whose guard holds, if any."""
        edge = next((edge for edge in node.on.get(event, []) if edge.guard is not False), None)
        if edge is None:
            return False
        if edge.target is None:
            self.trace.append(edge.label)
            return True
        domain = self.domain(node, edge.target)
        if self.taken is not None:
            if any(nested(domain, earlier) for earlier in self.taken):
                return self.preempted_takes_the_event  # preempted by an earlier one
            self.taken.append(domain)
        self.fire(domain, edge)
        return True

    def fire(self, domain: Node, edge: Edge) -> None:
        assert edge.target is not None
        self.exit_inside(domain)
        self.trace.append(edge.label)
        self.enter(domain, self.restored(edge.target))

    @staticmethod
    def domain(source: Node, target: Node) -> Node:
        node = source.parent
        while node is not None:
            if node.kind in CONTAINERS and node.contains(target):
                return node
            node = node.parent
        raise AssertionError("the top level holds every node")

    # -- exit and entry ---------------------------------------------------------------------
    def exit_inside(self, domain: Node) -> None:
        leaving = [node for node in self.active if domain.contains(node)]
        for node in leaving:
            containers = node.children if node.kind == "parallel" else [node]
            for container in containers:
                for history in container.children:
                    if history.kind == "history":
                        self.memory[history] = self.remembered(history, container)
        for node in leaving:
            del self.active[node]

    def remembered(self, history: Node, container: Node) -> list[Node]:
        inside = [node for node in self.active if container.contains(node)]
        if history.history == "shallow":
            return [node for node in inside if node.parent is container]
        return [node for node in inside if not any(node.contains(o) for o in inside)]

    def restored(self, target: Node) -> list[Node]:
        if target.kind != "history":
            return [target]
        if self.memory.get(target):
            return list(self.memory[target])
        if target.default is not None:
            return [target.default]
        assert target.parent is not None and target.parent.initial is not None
        return [target.parent.initial]

    def enter(self, domain: Node, targets: list[Node]) -> None:
        wanted: dict[Node, Node] = {}  # a container -> the child of it to enter
        below: Node | None = None
        for target in targets:
            node = target
            while node is not domain:
                assert node.parent is not None
                wanted[node.parent] = node
                below, node = node, node.parent
        assert below is not None
        self.enter_node(below, wanted)

    def enter_node(self, node: Node, wanted: dict[Node, Node]) -> None:
        if node.kind == "region":
            child = wanted.get(node) or node.initial
            assert child is not None
            self.enter_node(child, wanted)
            return
        self.entries += 1
        self.active[node] = self.entries
        if node.kind == "compound":
            child = wanted.get(node) or node.initial
            assert child is not None
            self.enter_node(child, wanted)
        elif node.kind == "parallel":
            for region in node.children:
                self.enter_node(region, wanted)
        elif node.kind == "final":
            self.reached_final(node)

    def reached_final(self, final: Node) -> None:
        container = final.parent
        assert container is not None
        if container.kind == "top":
            self.status = SUCCEEDED if final.outcome == "succeeded" else FAILED
            return
        if container.kind == "compound":
            what = "done" if final.outcome == "succeeded" else "failed"
            self.queue.append((what, container, self.active[container]))
            return
        parallel = container.parent
        assert parallel is not None
        if final.outcome == "failed":
            self.queue.append(("failed", parallel, self.active[parallel]))
        elif all(self.finished(region) for region in parallel.children):
            self.queue.append(("done", parallel, self.active[parallel]))

    def finished(self, region: Node) -> bool:
        return any(child.kind == "final" and child in self.active for child in region.children)

    # -- what the event caused --------------------------------------------------------------
    def drain(self) -> None:
        while self.queue and self.status == RUNNING:
            what, node, entered = self.queue.popleft()
            if self.entry(node) != entered:
                continue
            if what == "done":
                assert self.take(node, "done"), f"{node} has a done transition"
                continue
            around = [node, *node.ancestors()[:-1]]
            if not any(
                self.entry(other) is not None and self.take(other, what) for other in around
            ):
                self.stop()

    def stop(self) -> None:
        self.active.clear()
        self.queue.clear()
        self.status = FAILED


def nested(one: Node, other: Node) -> bool:
    """Whether one of two domains holds the other, or they are the same."""
    return one is other or one.contains(other) or other.contains(one)
