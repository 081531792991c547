"""Group commit: a worker's answers applied many per transaction, each as if it were alone.

One answer that cannot be applied does not fail the others of its batch; an event racing
a batch and the answer for the same instance are both applied once; worker processes killed
by SIGKILL in the middle of batches leave every task's result applied exactly once.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batch_workers import work_in_batches
from waiting import until

from engine import Engine
from engine.batching import Answer, Committer
from engine.tables import instances_t, tasks_t
from statemachines.errors import TaskNotHeld

SPAWN = multiprocessing.get_context("spawn")


def _answers(engine: Engine, count: int) -> tuple[list[str], list[Answer]]:
    """Claim `count` tasks; their instances, and an answer for each."""
    tasks = engine.claim_tasks(["jobs.work"], limit=count)
    assert len(tasks) == count
    answers = [Answer(t.id, engine.worker_id, {"n": n}, [], t.attempt) for n, t in enumerate(tasks)]
    return [t.instance_id for t in tasks], answers


def _transactions(engine: Engine) -> list[str]:
    """The operations the engine applies from now on, one per transaction."""
    applied: list[str] = []
    plain = engine._apply

    def counted(operation: Callable[..., Any], *args: Any) -> Any:
        applied.append(operation.__name__)
        return plain(operation, *args)

    engine._apply = counted  # type: ignore[method-assign]
    return applied


def test_a_batch_of_answers_is_one_transaction_and_each_step_is_published(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    for _ in range(5):
        engine.start("one_task", {})
    ids, answers = _answers(engine, 5)
    seen: list[str] = []
    engine.subscribe(lambda entry: seen.append(entry.instance_id))
    applied = _transactions(engine)
    assert engine.complete_batch(answers) == [(True, [])] * 5
    assert applied == ["complete_all"]
    assert set(seen) == set(ids)
    for instance_id in ids:
        instance = engine.get(instance_id)
        assert (instance.status, instance.context["n"] >= 0) == ("succeeded", True)


def test_an_answer_that_cannot_be_applied_does_not_fail_the_others_of_its_batch(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """In one batch: an instance whose machine is corrupt (failed alone, as without
    batching), an answer to another attempt (refused with TaskNotHeld, nothing written), a
    result that cannot be stored (a failed attempt, retried) and two healthy answers."""
    deploy("one_task")
    for _ in range(5):
        engine.start("one_task", {})
    ids, answers = _answers(engine, 5)
    poisoned, refused, unstorable, *healthy = ids
    with engine.store.engine.begin() as conn:
        conn.execute(
            sa.update(instances_t).where(instances_t.c.id == poisoned).values(machine="broken")
        )
    answers[1].attempt = 7
    answers[2].result = {"a set": {1, 2}}
    before = engine.get(refused).revision
    outcomes = engine.complete_batch(answers)
    assert outcomes[0] == (False, [])
    failed = engine.get(poisoned)
    assert failed.status == "failed"
    assert [e.kind for e in engine.history(poisoned)][-1] == "error"
    assert isinstance(outcomes[1], TaskNotHeld)
    assert engine.get(refused).revision == before
    assert outcomes[2] == (False, [])
    assert engine.history(unstorable)[-1].data["error"]["type"] == "ResultError"
    for instance_id, outcome in zip(healthy, outcomes[3:], strict=True):
        assert outcome == (True, [])
        assert engine.get(instance_id).status == "succeeded"


def test_a_batch_racing_events_to_its_instances_applies_each_answer_and_event_once(
    engine: Engine, deploy_on: Callable[[Engine, str], Any], store_url: str
) -> None:
    """Answers for 20 instances in one batch while another engine sends each of them a
    note: every answer and every note applied once, in one order or the other, the
    revisions one apart and the history numbered without a gap."""
    deploy_on(engine, "batch_race")
    for _ in range(20):
        engine.start("batch_race", {})
    ids, answers = _answers(engine, 20)
    sender = Engine(store_url)
    together = threading.Barrier(2)
    outcomes: list[Any] = []

    def answer() -> None:
        together.wait()
        outcomes.extend(engine.complete_batch(answers))

    try:
        batch = threading.Thread(target=answer)
        batch.start()
        together.wait()
        for number, instance_id in enumerate(ids):
            sender.send(instance_id, "note", {"n": number})
        batch.join(60)
    finally:
        sender.close()
    assert outcomes == [(True, [])] * 20
    for number, instance_id in enumerate(ids):
        instance = engine.get(instance_id)
        assert (instance.state, instance.context["noted"]) == ("answered", number)
        history = engine.history(instance_id)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        kinds = Counter((e.kind, e.event) for e in history)
        assert (kinds[("task", "done")], kinds[("event", "note")]) == (1, 1)
        assert instance.revision == 3  # started, answered, noted


def test_the_committer_waits_for_running_handlers_no_longer_than_its_linger() -> None:
    """Answers given while other handlers run join one batch; with none running, the
    batch goes at once; a batch never holds more than its size."""
    batches: list[list[str]] = []

    def apply(answers: list[Answer]) -> list[Any]:
        batches.append([a.task_id for a in answers])
        return [(True, []) for _ in answers]

    committer = Committer(apply, size=3, linger=60)
    committer.start()
    try:
        threads = []
        for number in range(4):
            with committer.handling():
                pass
            threads.append(
                threading.Thread(
                    target=committer.complete_and_claim, args=(f"t{number}", "w", None, [])
                )
            )
        for thread in threads:  # the handlers "ran" before any answer: all four running
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        committer.stop()
    assert sorted(len(batch) for batch in batches) == [1, 3]


def test_workers_killed_in_the_middle_of_batches_leave_each_result_applied_once(
    store_url: str, deploy_on: Callable[[Engine, str], Any], tmp_path: Path
) -> None:
    """Four worker processes with batching on, one killed by SIGKILL now and then and
    replaced: every instance completes with each of its tasks' results applied once."""
    real = Engine(store_url)
    deploy_on(real, "pipeline")
    count, waves = 400, 5
    wave = count // waves

    def started(first: int) -> list[str]:
        return real.start_many("pipeline", ({"n": n} for n in range(first, first + wave)))

    ids = started(0)
    stop = str(tmp_path / "stop")  # a file: a shared event's lock dies with a killed holder
    workers = [SPAWN.Process(target=work_in_batches, args=(store_url, stop)) for _ in range(4)]
    for worker in workers:
        worker.start()
    rng = random.Random(18)
    try:
        assert until(lambda: real.store.count_by_status("pipeline").get("succeeded", 0) > 0, 120)
        for number in range(1, waves):
            # A new wave of work before each kill: the workers are killed while answering,
            # never after the run is over, however fast they are.
            ids += started(number * wave)
            assert real.store.count_by_status("pipeline").get("succeeded", 0) < len(ids)
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            victim.join(10)
            fresh = SPAWN.Process(target=work_in_batches, args=(store_url, stop))
            fresh.start()
            workers.append(fresh)
            time.sleep(0.3)
        assert until(lambda: real.store.count_by_status("pipeline") == {"succeeded": count}, 180)
    finally:
        Path(stop).touch()
        for worker in workers:
            worker.join(30)
    with real.store.engine.connect() as conn:
        statuses = Counter(status for (status,) in conn.execute(sa.select(tasks_t.c.status)).all())
    assert statuses == {"done": 2 * count}
    for instance_id in ids:
        history = real.history(instance_id)
        done = [e.from_state for e in history if (e.kind, e.event) == ("task", "done")]
        assert done == ["fetch", "store"]
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert real.get(instance_id).context["stored"] == real.get(instance_id).context["fetched"]
    real.close()
