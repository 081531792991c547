"""Hooks (a part of `Engine`): application callbacks on entering and leaving states and on
transitions, per definition, called once a step has committed with the committed snapshot.

Delivered one of two ways, as each registration chooses:
- in-process (the default): in the thread that committed, right after its commit. At most
  once: a process that stops between the commit and the call never makes it, and only
  steps committed through this `Engine` are seen.
- durable (`durable=True`): by a runner (`run_hooks`, `deliver_hooks`) that reads the change
  feed under a named cursor, rebuilds each change's snapshot by time travel and saves the
  cursor after the hooks returned. At least once: a crash before the save calls them again,
  and a hook that raises is called again until it returns; `HookContext.change_id` is the
  key that tells a repeated call.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from statemachines import CompiledMachine
from statemachines.errors import DatabaseUnavailable, TurnoutError
from statemachines.replay import Replay

from . import travel
from .changes import Change
from .persist import snapshot
from .records import HistoryEntry, Instance
from .rows import InstanceRow, Written
from .store import Store

ENTER, EXIT, TRANSITION = "enter", "exit", "transition"
RETRY_FIRST_SECONDS = 0.1
RETRY_MOST_SECONDS = 60.0
log = logging.getLogger("turnout.hooks")


@dataclass(frozen=True)
class HookContext:
    """What a hook is called with: one state entered or left, or one transition, of a
    committed step.

    `instance` is the instance as the step left it, `entries` the history entries the step
    wrote. `state` is the state entered or left (`on_enter`, `on_exit`), by its full path;
    `transition` the history entry of the transition (`on_transition`). `change_id`,
    "<instance id>.<revision>" (the change feed's `Change.id`), names the step: a durable
    hook, called at least once, tells a repeated call by it. `position` is the change's place
    in the feed (durable delivery; None in-process).
    """

    hook: str
    instance: Instance
    entries: list[HistoryEntry]
    change_id: str
    durable: bool
    state: str | None = None
    transition: HistoryEntry | None = None
    position: int | None = None

    @property
    def event(self) -> str | None:
        """The transition's event, else that of the step's first entry (its cause)."""
        if self.transition is not None:
            return self.transition.event
        return self.entries[0].event if self.entries else None

    @property
    def source(self) -> str | None:
        """The state the transition left (None for a start)."""
        return self.transition.from_state if self.transition is not None else None

    @property
    def dest(self) -> str | None:
        """The state the transition went to."""
        return self.transition.to_state if self.transition is not None else None


Hook = Callable[[HookContext], Any]


@dataclass(frozen=True)
class Registration:
    """One hook as registered: what it listens to (None: any) and how it is delivered."""

    hook: str
    definition: str
    callback: Hook
    durable: bool
    state: str | None = None
    source: str | None = None
    dest: str | None = None
    event: str | None = None

    def takes(self, entry: HistoryEntry) -> bool:
        """Whether this transition hook is for the transition of `entry`."""
        return (
            (self.source is None or entry.from_state == self.source)
            and (self.dest is None or entry.to_state == self.dest)
            and (self.event is None or entry.event == self.event)
        )


@dataclass
class Registry:
    """The hooks of one engine, and which calls (by their place in `calls_of`) a durable
    runner has made of a change whose other calls failed: trying it again in this process
    makes only those that failed."""

    registered: list[Registration] = field(default_factory=list)
    delivered: dict[str, tuple[str, set[int]]] = field(default_factory=dict)
    in_process: bool = False  # whether any hook is delivered in-process: asked every commit

    def of(self, definition: str, durable: bool) -> list[Registration]:
        return [r for r in self.registered if r.durable == durable and r.definition == definition]


@dataclass
class Replays:
    """The instances of one batch of changes, each read and replayed once, as far as its
    last change in the batch (`until`): a hot instance's changes cost one replay."""

    until: dict[str, int]
    made: dict[str, tuple[InstanceRow, list[HistoryEntry], Replay]] = field(default_factory=dict)


def moves(before: Mapping[str, int], after: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """The states a step left and entered, from the active states before and after it,
    each with the number of its activation: a state left and entered again (a
    self-transition) has a new number and is in both. Left, the last entered first (a
    state before the one around it); entered, in the order entered (outermost first).
    Numbers, not the order of the paths, since PostgreSQL keeps JSON keys in an order of
    its own."""
    left = [path for path in before if after.get(path) != before[path]]
    entered = [path for path in after if before.get(path) != after[path]]
    left.sort(key=lambda path: before[path], reverse=True)
    entered.sort(key=lambda path: after[path])
    return left, entered


def calls_of(
    registrations: Sequence[Registration],
    instance: Instance,
    before: Mapping[str, int],
    after: Mapping[str, int],
    entries: list[HistoryEntry],
    change_id: str,
    position: int | None = None,
) -> list[tuple[Registration, HookContext]]:
    """The hooks one committed step calls, in order: those of the states left, of each
    transition (a history entry naming the state it went to), of the states entered."""
    left, entered = moves(before, after)
    durable = position is not None
    base = HookContext(EXIT, instance, entries, change_id, durable, position=position)
    calls: list[tuple[Registration, HookContext]] = []
    for path in left:
        context = replace(base, hook=EXIT, state=path)
        calls += [(r, context) for r in registrations if r.hook == EXIT and r.state in (None, path)]
    for entry in entries:
        if entry.to_state is None:
            continue
        context = replace(base, hook=TRANSITION, transition=entry)
        calls += [(r, context) for r in registrations if r.hook == TRANSITION and r.takes(entry)]
    for path in entered:
        context = replace(base, hook=ENTER, state=path)
        calls += [
            (r, context) for r in registrations if r.hook == ENTER and r.state in (None, path)
        ]
    return calls


def call_hook(registration: Registration, context: HookContext) -> bool:
    """Call one hook; whether it returned. One that raises is logged (logger
    `turnout.hooks`): the step it reports has committed already."""
    try:
        registration.callback(context)
        return True
    except Exception:
        log.exception(
            "%s %s hook %r of %s failed on change %s%s",
            "durable" if context.durable else "in-process",
            context.hook,
            registration.callback,
            registration.definition,
            context.change_id,
            f" ({context.state})" if context.state else "",
        )
        return False


def _name(value: str | None, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{what} must be a non-empty name or None, not {value!r}")


class Hooks:
    """The engine's hook calls (a part of `Engine`)."""

    store: Store
    _hooks: Registry

    if TYPE_CHECKING:  # the other parts of `Engine`: drawing.py's and feed.py's

        def _machine_of(self, name: str, version: int) -> CompiledMachine: ...

        def changes(
            self, after: int = 0, limit: int = 100, *, definitions: list[str] | None = None
        ) -> list[Change]: ...

        def change_cursor(self, name: str) -> int | None: ...

        def save_change_cursor(self, name: str, position: int) -> None: ...

        def wait_for_changes(self, timeout: float) -> bool: ...

    def on_enter(
        self, definition: str, state: str | None = None, *, durable: bool = False
    ) -> Callable[[Hook], Hook]:
        """Decorator registering `hook(context)` for each committed step of an instance of
        `definition` that enters `state` (its full path, as "paid" or "review.legal.done";
        None: any state). In-process unless `durable` (see hooks.py)."""
        return self._register(ENTER, definition, durable, state=state)

    def on_exit(
        self, definition: str, state: str | None = None, *, durable: bool = False
    ) -> Callable[[Hook], Hook]:
        """Decorator registering `hook(context)` for each committed step of an instance of
        `definition` that leaves `state` (None: any state); as `on_enter`."""
        return self._register(EXIT, definition, durable, state=state)

    def on_transition(
        self,
        definition: str,
        *,
        source: str | None = None,
        dest: str | None = None,
        event: str | None = None,
        durable: bool = False,
    ) -> Callable[[Hook], Hook]:
        """Decorator registering `hook(context)` for each transition of an instance of
        `definition` from `source`, to `dest`, on `event` (None: any) once its step has
        committed; a start is a transition from None. As `on_enter`."""
        return self._register(
            TRANSITION, definition, durable, source=source, dest=dest, event=event
        )

    def _register(
        self, hook: str, definition: str, durable: bool, **filters: str | None
    ) -> Callable[[Hook], Hook]:
        _name(definition, "a hook's definition")
        if definition is None:
            raise TypeError("a hook is registered for one definition, named")
        for what, value in filters.items():
            _name(value, f"a hook's {what}")

        def register(callback: Hook) -> Hook:
            if inspect.iscoroutinefunction(callback) or not callable(callback):
                raise TypeError(
                    f"a hook is a plain function taking a HookContext, not {callback!r}"
                )
            self._hooks.registered.append(
                Registration(hook, definition, callback, bool(durable), **filters)
            )
            self._hooks.in_process = self._hooks.in_process or not durable
            return callback

        return register

    def _after_commit(self, written: list[Written]) -> None:
        """Call the in-process hooks of every step a committed transaction wrote (each
        once: the list is emptied)."""
        if not self._hooks.in_process:
            return
        while written:
            step = written.pop(0)
            wanted = self._hooks.of(step.after.definition, durable=False)
            if not wanted:
                continue
            before = step.before.machine.get("active", {}) if step.before is not None else {}
            after = step.after.machine.get("active", {})
            change_id = f"{step.after.id}.{step.after.revision}"
            instance = snapshot(step.after)
            for registration, context in calls_of(
                wanted, instance, before, after, step.entries, change_id
            ):
                call_hook(registration, context)

    def deliver_hooks(self, name: str = "hooks", *, limit: int = 100) -> int:
        """Call the durable hooks of the changes after runner `name`'s cursor, at most
        `limit`, oldest first; then save the cursor. The number of changes passed.

        A change one of whose hooks raised stops the round, and the cursor stays before it:
        the next round calls that change's failed hooks again (and, in another process or
        after a crash, all of its hooks). A runner name never seen starts at the oldest
        change kept.
        """
        return self._deliver(name, limit)[0]

    def _deliver(self, name: str, limit: int) -> tuple[int, bool]:
        """`deliver_hooks`: the changes passed, and whether a hook failed."""
        start = self.change_cursor(name) or 0
        position, passed, failed = start, 0, False
        batch = self.changes(start, limit)
        replays = Replays({change.instance_id: change.last_entry for change in batch})
        for change in batch:
            if not self._deliver_change(name, change, replays):
                failed = True
                break
            position, passed = change.position, passed + 1
        if position > start:
            self.save_change_cursor(name, position)
        return passed, failed

    def _deliver_change(self, name: str, change: Change, replays: Replays) -> bool:
        wanted = self._hooks.of(change.definition, durable=True)
        if not wanted or change.first_entry > change.last_entry:
            return True
        try:
            before, after, entries, instance = self._rebuilt(change, replays)
        except DatabaseUnavailable:
            raise
        except TurnoutError as exc:  # a history that does not replay: no snapshot to give
            log.error("the hooks of change %s are skipped: %s", change.id, exc)
            return True
        known, done = self._hooks.delivered.get(name, (change.id, set()))
        done = done if known == change.id else set()
        calls = calls_of(wanted, instance, before, after, entries, change.id, change.position)
        for number, (registration, context) in enumerate(calls):
            if number not in done and call_hook(registration, context):
                done.add(number)
        if len(done) == len(calls):
            self._hooks.delivered.pop(name, None)
            return True
        self._hooks.delivered[name] = (change.id, done)
        return False

    def _rebuilt(
        self, change: Change, replays: Replays
    ) -> tuple[dict[str, int], dict[str, int], list[HistoryEntry], Instance]:
        """A change's active states before and after it, its entries and its instance
        after it, by time travel (a replay of the instance's history, one a batch)."""
        found = replays.made.get(change.instance_id)
        if found is None:
            row = self.store.get_instance(change.instance_id)
            if row is None:
                raise TurnoutError(f"instance {change.instance_id} is gone")
            history = self.store.history(row.id, row.definition)
            until = replays.until[change.instance_id]
            found = row, history, travel.replayed(row, history, self._machine_of, until=until)
            replays.made[change.instance_id] = found
        row, history, replay = found
        first, last = change.first_entry, change.last_entry
        before, after = travel.points_around(row, replay, first, last)
        entries = [entry for entry in history if first <= entry.seq <= last]
        return (
            dict(before.machine.get("active", {})) if before is not None else {},
            dict(after.machine.get("active", {})),
            entries,
            travel.instance_at(row, after),
        )

    def run_hooks(
        self,
        name: str = "hooks",
        *,
        stop: threading.Event | None = None,
        limit: int = 100,
        idle: float = 1.0,
    ) -> None:
        """Deliver the durable hooks (`deliver_hooks` under runner `name`) until `stop` is
        set or the process is interrupted. With nothing to deliver it waits for the feed
        to move (`wait_for_changes`, at most `idle` seconds); after a hook failed it tries
        again after a pause that doubles from 0.1 s to at most a minute."""
        stop = stop or threading.Event()
        pause = RETRY_FIRST_SECONDS
        try:
            while not stop.is_set():
                try:
                    passed, failed = self._deliver(name, limit)
                except DatabaseUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    passed, failed = 0, True
                if failed:
                    stop.wait(pause)
                    pause = min(pause * 2, RETRY_MOST_SECONDS)
                    continue
                pause = RETRY_FIRST_SECONDS
                if passed < limit and not stop.is_set():
                    self.wait_for_changes(idle)
        except KeyboardInterrupt:
            stop.set()
