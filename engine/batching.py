"""Group commit: the answers of a worker's tasks in hand, applied in one transaction per batch.

A worker's handler threads hand their results to a `Committer` instead of committing each
one. The committer waits for the first answer, then gathers more until the batch is full,
until `linger` has passed since the first, or at once when no other handler is still running
(no answer is on its way, so waiting would only add latency). Each batch is one transaction:
every instance and task it answers is locked and read first, in one round trip and in id
order (two batches lock their rows in the same order: neither waits for the other while
holding a row the other needs), then each answer is applied as `runtime.complete_and_claim`
applies it alone, the instance's next task claimed with it, with no round trip of its own
on PostgreSQL until the COMMIT.

Per instance nothing changes: each answer goes through the same checks (its attempt, its
lease, a late answer recorded stale), two answers for one instance are applied in the order
they came, and subscribers, hooks and metrics see each step once the batch has committed.
An answer that cannot be applied in the batch (any exception) does not fail the others: the
batch is rolled back, that answer is applied alone, as without batching (its instance
failed alone if it is at fault, its refusal given to its handler's thread), and the rest are
applied again without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from statemachines.errors import ConcurrentUpdate, DatabaseUnavailable

from . import runtime
from .catalog import Catalog
from .persist import Applied
from .records import ClaimedTask
from .rows import InstanceRow, TaskRow
from .transaction import _INSTANCE_FIELDS, _TASK_FIELDS, Transaction

Result = TypeVar("Result")
Answered = tuple[bool, list[ClaimedTask]]  # applied, and the instance's next task claimed
log = logging.getLogger("turnout.worker")

# Defaults of `Engine.work` and `turnout worker`: up to 64 answers per transaction, and an
# answer waits at most 2 ms for others while handlers are still running.
DEFAULT_BATCH = 64
DEFAULT_LINGER = 0.002


@dataclass
class Answer:
    """A task's result, as `Engine.complete_and_claim` takes it."""

    task_id: str
    worker: str
    result: Any
    names: list[str]
    attempt: int | None = None


class Batching(Protocol):
    """What of the `Engine` a batch of answers uses."""

    catalog: Catalog
    lease: timedelta

    def clock(self) -> datetime: ...
    def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...
    def _publish(self, applied: Applied | None) -> None: ...

    def complete_and_claim(
        self,
        task_id: str,
        worker: str | None,
        result: Any,
        names: list[str],
        *,
        attempt: int | None = None,
    ) -> Answered: ...


class _Unapplied(Exception):
    """The answer at `index` of a batch raised: the batch is rolled back without it."""

    def __init__(self, index: int) -> None:
        super().__init__(f"answer {index} of the batch could not be applied")
        self.index = index


def complete_all(
    tx: Transaction,
    catalog: Catalog,
    answers: list[Answer],
    lease: timedelta,
    now: datetime,
) -> list[runtime.Completed]:
    """Apply every answer of `answers` in this transaction, in their order; _Unapplied names
    the first that raised (a conflict of optimistic locking is left to `Engine._apply`,
    which runs the whole batch again)."""
    ahead = lock_ahead(tx, [answer.task_id for answer in answers])
    done: list[runtime.Completed] = []
    for index, answer in enumerate(answers):
        seen = len(tx.written)
        try:
            done.append(
                runtime.complete_and_claim(
                    tx,
                    catalog,
                    answer.task_id,
                    answer.worker,
                    answer.result,
                    answer.names,
                    lease,
                    answer.attempt,
                    now,
                    locked=ahead.pop(answer.task_id, None),
                )
            )
        except ConcurrentUpdate:
            raise
        except Exception as exc:
            raise _Unapplied(index) from exc
        # Rows read ahead of an instance this step wrote (itself, a parent, a child) are out
        # of date: the answers that need them read them again.
        changed = {written.after.id for written in tx.written[seen:]}
        for task_id in [t for t, (_, row) in ahead.items() if row.id in changed]:
            del ahead[task_id]
    return done


def lock_ahead(tx: Transaction, task_ids: list[str]) -> dict[str, tuple[TaskRow, InstanceRow]]:
    """The tasks `task_ids` and their instances, locked and read in one round trip, by task
    id: on PostgreSQL the instances first (as every writer locks them), each table's rows in
    id order, so that two batches never hold a row the other waits for. (SQLite has one
    writer at a time.)"""
    if len(task_ids) < 2:
        return {}
    mark = "%s" if tx.postgres else "?"
    marks = ", ".join([mark] * len(task_ids))
    tasks = f"SELECT {_TASK_FIELDS} FROM turnout_tasks WHERE id IN ({marks}) ORDER BY id"
    instances = (
        f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id IN (SELECT instance_id "
        f"FROM turnout_tasks WHERE id IN ({marks})) ORDER BY id"
    )
    if tx.postgres:
        tasks += " FOR UPDATE"
        # Without instance row locks (optimistic), each update's revision check decides.
        instances += "" if tx.optimistic else " FOR UPDATE"
    instance_rows, task_rows = tx.cursor.connection.cursor(), tx.cursor.connection.cursor()
    instance_rows.execute(instances, task_ids)  # the two travel together on PostgreSQL
    task_rows.execute(tasks, task_ids)
    found = (tx.instance_of(row) for row in instance_rows.fetchall())
    by_id = {row.id: row for row in found if row is not None}
    read = (tx._task(row) for row in task_rows.fetchall())
    return {task.id: (task, by_id[task.instance_id]) for task in read if task.instance_id in by_id}


def apply_answers(engine: Batching, answers: list[Answer]) -> list[Answered | Exception]:
    """Apply `answers` in as few transactions as they allow: one, unless some cannot be
    applied. Each outcome is what `Engine.complete_and_claim` would have returned or raised
    for that answer alone."""
    outcomes: dict[int, Answered | Exception] = {}
    pending = list(range(len(answers)))
    while pending:
        now = engine.clock()
        batch = [answers[at] for at in pending]
        try:
            done = engine._apply(complete_all, engine.catalog, batch, engine.lease, now)
        except _Unapplied as unapplied:
            at = pending.pop(unapplied.index)
            outcomes[at] = _alone(engine, answers[at])
            continue
        except DatabaseUnavailable as exc:  # the database, not an answer: none is retried
            outcomes.update((at, exc) for at in pending)
            break
        except Exception as exc:  # raised at COMMIT, by no answer in particular
            log.warning("a batch of %d answers failed (%s); each is applied alone", len(batch), exc)
            outcomes.update((at, _alone(engine, answers[at])) for at in pending)
            break
        until = now + engine.lease
        for at, completed in zip(pending, done, strict=True):
            engine._publish(completed.applied)
            following = [runtime.claimed_task(row, until) for row in completed.following()]
            outcomes[at] = (completed.ok, following)
        break
    return [outcomes[at] for at in range(len(answers))]


def _alone(engine: Batching, answer: Answer) -> Answered | Exception:
    try:
        return engine.complete_and_claim(
            answer.task_id, answer.worker, answer.result, answer.names, attempt=answer.attempt
        )
    except Exception as exc:
        return exc


@dataclass
class _Waiting:
    """An answer in the committer's queue, and what its handler's thread is given back."""

    answer: Answer
    queued_at: float
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Answered | Exception | None = None


class Committer:
    """Applies the answers of a worker's handler threads, `size` at most per transaction,
    each waiting at most `linger` seconds for others while handlers still run; `flushers`
    batches at most in flight at once."""

    def __init__(
        self,
        apply: Callable[[list[Answer]], list[Answered | Exception]],
        size: int = DEFAULT_BATCH,
        linger: float = DEFAULT_LINGER,
        flushers: int = 1,
    ) -> None:
        self.apply = apply
        self.size = max(1, size)
        self.linger = max(0.0, linger)
        self._queue: list[_Waiting] = []
        self._running = 0  # handlers running, whose answers may yet join a batch
        self._stopping = False
        self._changed = threading.Condition()
        # Each flusher commits a batch at a time: with more than one, a batch is gathered
        # and committed while another's commit is on its way.
        self._threads = [
            threading.Thread(target=self._loop, daemon=True, name=f"turnout-committer-{number}")
            for number in range(max(1, flushers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Apply what is queued, then end the committer's thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Around a handler: while it runs, a batch may wait (up to `linger`) for its answer.
        A handler that answers leaves through `complete_and_claim`, one that fails here."""
        with self._changed:
            self._running += 1
        try:
            yield
        except BaseException:
            self._ended()
            raise

    def _ended(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def complete_and_claim(
        self,
        task_id: str,
        worker: str | None,
        result: Any,
        names: list[str],
        *,
        attempt: int | None = None,
    ) -> Answered:
        """`Engine.complete_and_claim`, applied with the batch it joins; called once after
        `handling`, by the thread whose handler answered."""
        waiting = _Waiting(Answer(task_id, worker or "", result, names, attempt), time.monotonic())
        with self._changed:
            self._running -= 1
            self._queue.append(waiting)
            self._changed.notify_all()
        waiting.done.wait()
        outcome = waiting.outcome
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return outcome

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                outcomes = self.apply([waiting.answer for waiting in batch])
            except Exception as exc:  # a bug here must not leave the handlers' threads waiting
                log.exception("a batch of %d answers could not be applied", len(batch))
                outcomes = [exc] * len(batch)
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
                waiting.done.set()

    def _next_batch(self) -> list[_Waiting] | None:
        """The next answers to apply, once the batch is full, its first answer has waited
        `linger`, or no handler still runs; None when stopped with nothing queued."""
        with self._changed:
            while not self._queue:
                if self._stopping:
                    return None
                self._changed.wait()
            deadline = self._queue[0].queued_at + self.linger
            while len(self._queue) < self.size and self._running > 0 and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            batch, self._queue = self._queue[: self.size], self._queue[self.size :]
            return batch
