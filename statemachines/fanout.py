"""A foreach state's bookkeeping: its items fanned out within `concurrency`, each item's
outcome (a result, or a failure that `tolerate` allows or that fails the state), and its
`done` once every item has an outcome.

The book of a foreach state lives in the machine data, under `foreach` and the state's path:
`items`, `results` (in item order; a failed item's slot stays None), `finished`, `left` (items
without an outcome yet) and `next` (the first item not started); after a redrive, `redo` (items
started before that run again first, in order); with `tolerate` written, also
`tolerate` (how many failed items are allowed, counted once at fan-out) and `failures`. A book
without `tolerate` (one written before the option existed, say) fails at its first failure.

What happens to one item is told by `item_succeeded` and `item_failed`, whatever ran it;
`start_item` is the one place that says what running an item means: its task, or with
`call` a child instance (whose end comes back as the item's outcome; a failed item's entry
in `failures` names that child).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .chart import Chart
from .model import DEFAULT_FOREACH_CONCURRENCY, DEFAULT_RESULT, MAX_FOREACH_ITEMS, State
from .steps import Entry

if TYPE_CHECKING:
    from .model import CallSpec, TaskSpec

ITEMS_FAILED = "ItemsFailed"  # the error type of a foreach whose failed items exceed `tolerate`
MAX_FAILURE_MESSAGE = 200  # characters of an item's error message kept in `failures`


class FanOut:
    """What `Run` does for foreach states; `Run` provides the names declared here."""

    chart: Chart
    machine: dict[str, Any]
    context: dict[str, Any]
    history: list[Entry]
    queue: deque[tuple[str, str, int, Any]]

    if TYPE_CHECKING:

        def names(self, event: Any = None, trigger: str = "") -> dict[str, Any]: ...
        def evaluate(
            self, expression: Any, names: dict[str, Any], what: str, path: str = "value"
        ) -> tuple[bool, Any]: ...
        def fail_later(self, path: str, activation: int, error_type: str, message: str) -> None: ...
        def schedule(
            self, state: State, spec: TaskSpec, activation: int, item: int | None, item_value: Any
        ) -> None: ...
        def call(
            self,
            state: State,
            spec: CallSpec,
            activation: int,
            item: int | None = None,
            item_value: Any = None,
        ) -> None: ...
        def deliver_done(self, path: str, payload: Any, kind: str) -> None: ...
        def deliver_failed(self, path: str, payload: Any, kind: str) -> None: ...

    def fan_out(self, state: State, activation: int) -> None:
        """Open the book of a foreach state just entered and start its first items."""
        assert state.foreach is not None
        what = f"items of {state.path}"
        valid, items = self.evaluate(state.foreach.items, self.names(), what, "items")
        message = None
        if not valid or not isinstance(items, list):
            message = "foreach items is not a list"
        elif len(items) > MAX_FOREACH_ITEMS:
            message = f"foreach items has {len(items)} items, more than {MAX_FOREACH_ITEMS}"
        if message is not None:
            self.fail_later(state.path, activation, "ItemsError", message)
            return
        limit = state.foreach.concurrency or DEFAULT_FOREACH_CONCURRENCY
        book: dict[str, Any] = {
            "items": items,
            "results": [None] * len(items),
            "finished": [False] * len(items),
            "left": len(items),
            "next": min(limit, len(items)),
        }
        if state.foreach.tolerate is not None:
            book["tolerate"] = state.foreach.tolerate.allowed(len(items))
            book["failures"] = []
        self.machine.setdefault("foreach", {})[state.path] = book
        for index in range(book["next"]):
            self.start_item(state, activation, book, index)
        if not items:
            self.all_items_finished(state, book, activation, queued=True)

    def start_item(self, state: State, activation: int, book: dict[str, Any], index: int) -> None:
        assert state.foreach is not None
        if state.foreach.call is not None:
            self.call(state, state.foreach.call, activation, index, book["items"][index])
        else:
            assert state.foreach.task is not None
            self.schedule(state, state.foreach.task, activation, index, book["items"][index])

    def item_succeeded(
        self,
        state: State,
        book: dict[str, Any],
        activation: int,
        item: int,
        result: Any,
        kind: str = "task",
    ) -> None:
        """Item `item` (pending, see `item_pending`) finished with `result` (its task's,
        or of `kind` 'call' its child's final context)."""
        book["results"][item] = result
        details = {"index": item, "result": result}
        self.history.append(Entry(kind, "done", state.path, None, details))
        self.item_finished(state, book, activation, item)

    def item_failed(
        self,
        state: State,
        book: dict[str, Any],
        activation: int,
        item: int,
        error: dict[str, Any],
        attempts: int,
        child: str | None = None,
        kind: str = "task",
    ) -> None:
        """Item `item` (pending) failed for good with `error`: recorded and passed over while
        `tolerate` allows; else `failed` fires on the state at once, which leaving it drops
        the other items' work. Without `tolerate` the payload is the item's own failure.
        An item that called (`kind` 'call') has no attempts, and names its `child` when
        known (not for one past its timeout, whose child is being cancelled)."""
        payload: dict[str, Any] = {"error": error, "attempts": attempts, "index": item}
        if kind == "call":
            payload = {"error": error, "index": item}
            if child is not None:
                payload["child"] = child
        if "tolerate" not in book:
            self.deliver_failed(state.path, payload, kind)
            return
        message = str(error.get("message", ""))[:MAX_FAILURE_MESSAGE]
        failure = {"index": item, "error": {"type": error.get("type"), "message": message}}
        if child is not None:
            failure["child"] = child
        failures: list[dict[str, Any]] = book["failures"]
        failures.append(failure)
        failures.sort(key=lambda entry: entry["index"])
        if len(failures) > book["tolerate"]:
            count, total, allowed = len(failures), len(book["items"]), book["tolerate"]
            summary = f"{count} of {total} items failed, more than the {allowed} tolerated"
            payload["error"] = {"type": ITEMS_FAILED, "message": summary}
            payload["failures"] = failures
            self.deliver_failed(state.path, payload, kind)
            return
        self.history.append(Entry(kind, "failed", state.path, None, {**payload, "tolerated": True}))
        self.item_finished(state, book, activation, item)

    def item_finished(self, state: State, book: dict[str, Any], activation: int, item: int) -> None:
        """Item `item` has its outcome: the next item starts (within `concurrency`), and
        once none is left the state's `done` fires."""
        book["finished"][item] = True
        book["left"] -= 1
        if book.get("redo") or book["next"] < len(book["items"]):
            self.start_item(state, activation, book, next_item(book))
        if book["left"] == 0:
            self.all_items_finished(state, book, activation)

    def all_items_finished(
        self, state: State, book: dict[str, Any], activation: int, queued: bool = False
    ) -> None:
        """`done` with `{results: [...]}` in item order (and `failures` with `tolerate`): at
        once, or `queued` when the state is still being entered."""
        assert state.foreach is not None
        payload: dict[str, Any] = {"results": book["results"]}
        if "tolerate" in book:
            payload["failures"] = book["failures"]
        self.store_result(state.foreach.result, state.name, payload, "results")
        if queued:
            self.queue.append(("done", state.path, activation, payload))
            return
        self.remember_result(state.path, payload)
        self.deliver_done(state.path, payload, "task" if state.foreach.call is None else "call")

    def remember_result(self, path: str, result: Any) -> None:
        """Keep `result` as the last task result of the parallel state's region around the
        node at `path`, for the `done` of that parallel state."""
        for node in self.chart.ancestors(path):
            if node in self.chart.branches:
                self.machine.setdefault("results", {})[node] = result
                return

    def store_result(
        self, how: str | bool, state_name: str, result: Any, unwrap: str | None = None
    ) -> None:
        if how is False:
            return
        if how == DEFAULT_RESULT:
            if isinstance(result, dict):
                self.context.update(result)
            else:
                self.context[state_name] = result
        else:
            self.context[str(how)] = result[unwrap] if unwrap else result


def item_pending(book: dict[str, Any] | None, item: int) -> bool:
    """Whether foreach `item` is one of the book's items and has no outcome yet."""
    return book is not None and 0 <= item < len(book["items"]) and not book["finished"][item]


def next_item(book: dict[str, Any]) -> int:
    """The next item of the book to start (and count as started): an item a redrive runs
    again, first, else the first item not started."""
    redo: list[int] | None = book.get("redo")
    if redo:
        index = int(redo.pop(0))
        if not redo:
            del book["redo"]
        return index
    index = int(book["next"])
    book["next"] += 1
    return index
