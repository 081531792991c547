"""Redrive and reset on the durable engine (SQLite and PostgreSQL), with real workers: a
redrive runs again only what had not succeeded, a reset moves an instance by hand with an
audit entry, and a bulk redrive selects failed instances (or only lists them, dry)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from engine import (
    Engine,
    InstanceNotFound,
    InvalidInput,
    RedriveOutcome,
    RedriveRefused,
    UnknownState,
)
from engine.tables import instances_t

PEOPLE = ["ann", "bob", "cy", "dee", "eve", "fay"]


def _raises(exc: Exception) -> Callable[[Any], Any]:
    """A handler that fails its every attempt with `exc`."""

    def handler(data: Any) -> Any:
        raise exc

    return handler


class Mailer:
    """`mail.send`: bounces the recipients in `broken` until they are fixed, counting calls."""

    def __init__(self, *broken: str) -> None:
        self.broken = set(broken)
        self.calls: Counter[str] = Counter()

    def __call__(self, data: dict[str, Any]) -> Any:
        self.calls[data["to"]] += 1
        if data["to"] in self.broken:
            raise RuntimeError(f"no mailbox for {data['to']}")
        return f"sent:{data['to']}"


def _failed_mailing(engine: Engine, mailer: Mailer) -> str:
    engine.task("mail.send")(mailer)
    instance = engine.start("mailing", {"recipients": PEOPLE})
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert (failed.status, failed.state) == ("failed", "not_sent")
    return instance.id


def test_redrive_of_a_failed_foreach_runs_again_only_the_items_without_a_result(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    mailer = Mailer("cy")
    instance_id = _failed_mailing(engine, mailer)
    before = dict(mailer.calls)
    kept = {
        entry.data["index"]
        for entry in engine.history(instance_id)
        if (entry.kind, entry.event) == ("task", "done")
    }
    assert kept and 2 not in kept  # some receipts, and cy bounced

    mailer.broken.clear()
    redriven = engine.redrive(instance_id, reason="mailbox created")
    assert (redriven.status, redriven.state) == ("running", "send")
    engine.run_until_idle()

    done = engine.get(instance_id)
    assert (done.status, done.state) == ("succeeded", "sent")
    assert done.context["receipts"] == [f"sent:{person}" for person in PEOPLE]
    assert done.context["count"] == len(PEOPLE)
    # An item with a receipt is not sent again; every other one is sent once more.
    again = {person: mailer.calls[person] - before.get(person, 0) for person in PEOPLE}
    assert again == {person: int(index not in kept) for index, person in enumerate(PEOPLE)}


def test_redrive_of_a_failed_task_runs_it_again_and_the_instance_then_succeeds(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    calls: Counter[str] = Counter()
    disk_full = [True]

    @engine.task("pipeline.fetch")
    def fetch(data: Any) -> Any:
        calls["fetch"] += 1
        return {"rows": 3}

    @engine.task("pipeline.store")
    def store(data: Any) -> Any:
        calls["store"] += 1
        if disk_full[0]:
            raise OSError("disk full")
        return {"stored": data["rows"]}

    instance = engine.start("pipeline", {})
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error["type"], failed.error["state"]) == ("OSError", "store")

    disk_full[0] = False
    redriven = engine.redrive(instance.id, reason="disk cleaned")
    assert redriven.revision == failed.revision + 1
    assert redriven.error is None
    entry = engine.history(instance.id)[-1]
    assert (entry.kind, entry.from_state, entry.to_state) == ("redrive", "store", "store")
    assert entry.data["reason"] == "disk cleaned"
    assert entry.data["error"] == failed.error
    assert entry.data["revision"] == redriven.revision
    engine.run_until_idle()

    done = engine.get(instance.id)
    assert (done.status, done.state, done.context["stored"]) == ("succeeded", "finished", 3)
    assert calls == {"fetch": 1, "store": 2}


def test_redrive_of_a_failed_call_state_starts_a_new_child(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("redrive_child")
    deploy("redrive_parent")
    ready = [False]

    @engine.task("child.compute")
    def compute(data: Any) -> Any:
        if not ready[0]:
            raise LookupError("not ready")
        return {"double": data["n"] * 2}

    parent = engine.start("redrive_parent", {"n": 21})
    engine.run_until_idle()
    assert engine.get(parent.id).status == "failed"

    ready[0] = True
    engine.redrive(parent.id)
    engine.run_until_idle()

    done = engine.get(parent.id)
    assert (done.status, done.context["answer"]["double"]) == ("succeeded", 42)
    first, second = done.children
    assert engine.get(first).status == "failed"  # the failed child stays as it ended
    assert engine.get(second).status == "succeeded"


@pytest.mark.parametrize("finish", [False, True])
def test_redrive_is_refused_for_an_instance_that_is_not_failed(
    engine: Engine, deploy: Callable[[str], Any], finish: bool
) -> None:
    deploy("pipeline")
    engine.task("pipeline.fetch")(lambda data: {"rows": 1})
    engine.task("pipeline.store")(lambda data: {"stored": 1})
    instance = engine.start("pipeline", {})
    if finish:
        engine.run_until_idle()
    before = engine.get(instance.id)
    status = "succeeded" if finish else "running"
    assert before.status == status

    with pytest.raises(RedriveRefused, match=f"it is {status}; only a failed instance"):
        engine.redrive(instance.id, reason="try")

    assert engine.get(instance.id) == before
    assert len(engine.history(instance.id)) == len(engine.history(before.id))


def test_redrive_is_refused_once_compensation_ran_for_the_failure(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    for name in ("flights.book", "flights.cancel", "cars.book"):
        engine.task(name)(lambda data: {"ok": True})

    @engine.task("hotels.book")
    def hotel(data: Any) -> Any:
        raise RuntimeError("fully booked")

    instance = engine.start("saga", {})
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.status == "failed"
    with pytest.raises(RedriveRefused, match="compensation ran for its failure"):
        engine.redrive(instance.id)
    assert engine.get(instance.id) == failed


def test_an_instance_compensated_before_failure_points_were_kept_is_refused_by_its_history(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    engine.task("flights.book")(lambda data: {"ok": True})
    engine.task("flights.cancel")(lambda data: {"ok": True})
    engine.task("hotels.book")(_raises(RuntimeError("fully booked")))
    instance = engine.start("saga", {})
    engine.run_until_idle()
    row = engine.store.get_instance(instance.id)
    assert row is not None
    # An instance that failed under an earlier version kept no failure point.
    machine = {key: value for key, value in row.machine.items() if key != "redrive"}
    with engine.store.engine.begin() as conn:
        update = sa.update(instances_t).where(instances_t.c.id == instance.id)
        conn.execute(update.values(machine=machine))

    with pytest.raises(RedriveRefused, match=r"compensation ran for its failure \(flights.cancel"):
        engine.redrive(instance.id)
    [outcome] = engine.redrive_many("saga")
    assert outcome.outcome == "refused"


def test_redrive_of_an_unknown_instance_is_not_found(engine: Engine) -> None:
    with pytest.raises(InstanceNotFound):
        engine.redrive("0" * 32)


# -- reset -----------------------------------------------------------------------------------
def test_reset_writes_an_audit_entry_drops_the_old_work_and_schedules_the_new_states(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("timed_task")
    instance = engine.start("timed_task", {"job": 1})
    assert engine.next_due() is not None  # the 1m timer of `waiting`

    moved = engine.reset(instance.id, "work", {"job": 2, "by": "ops"}, reason="skip the wait")
    assert (moved.state, moved.status, moved.revision) == ("work", "running", 2)
    assert moved.context == {"job": 2, "by": "ops"}
    entry = engine.history(instance.id)[-1]
    assert (entry.kind, entry.from_state, entry.to_state) == ("reset", "waiting", "work")
    assert entry.data == {
        "reason": "skip the wait",
        "from": ["waiting"],
        "to": "work",
        "status": "running",
        "patch": {"job": 2, "by": "ops"},
        "revision": 2,
    }

    clock.advance(120)
    assert engine.fire_due_timers() == 0  # the timer of `waiting` went with it
    [task] = engine.claim_tasks(["jobs.work"], "w1", 60)
    assert (task.state, task.input) == ("work", {"job": 2, "by": "ops"})


def test_reset_drops_a_claimed_task_whose_answer_then_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    instance = engine.start("pipeline", {})
    [fetch] = engine.claim_tasks(["pipeline.fetch"], "w1", 60)
    engine.reset(instance.id, "store", reason="rows fetched by hand")

    assert engine.complete_task(fetch.id, "w1", {"rows": 9}) is False  # stale
    [store] = engine.claim_tasks(None, "w1", 60)
    assert store.name == "pipeline.store"
    assert engine.get(instance.id).state == "store"


def test_reset_reopens_a_failed_instance(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("pipeline")
    engine.task("pipeline.fetch")(lambda data: {"rows": 1})
    engine.task("pipeline.store")(_raises(OSError("disk full")))
    instance = engine.start("pipeline", {})
    engine.run_until_idle()
    assert engine.get(instance.id).status == "failed"

    engine.task("pipeline.store")(lambda data: {"stored": data["rows"]})
    moved = engine.reset(instance.id, "store", {"rows": 5}, reason="rows corrected")
    assert (moved.status, moved.error) == ("running", None)
    engine.run_until_idle()
    assert engine.get(instance.id).context["stored"] == 5


def test_reset_to_an_unknown_state_names_the_states_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    instance = engine.start("pipeline", {})
    with pytest.raises(UnknownState, match="its states are: fetch, store, finished") as caught:
        engine.reset(instance.id, "archive", reason="tidy up")
    assert caught.value.known == ["fetch", "store", "finished"]
    assert engine.get(instance.id) == instance
    assert [entry.kind for entry in engine.history(instance.id)] == ["start"]


@pytest.mark.parametrize(
    ("patch", "reason", "message"),
    [
        (None, "", "a reason is required"),
        (None, None, "a reason is required"),
        ([1, 2], "fix", "a context patch must be a JSON object"),
    ],
)
def test_a_reset_without_a_reason_or_with_a_patch_that_is_no_object_is_refused(
    engine: Engine, deploy: Callable[[str], Any], patch: Any, reason: Any, message: str
) -> None:
    deploy("pipeline")
    instance = engine.start("pipeline", {})
    with pytest.raises(InvalidInput, match=message):
        engine.reset(instance.id, "store", patch, reason=reason)
    assert engine.get(instance.id) == instance


# -- many ------------------------------------------------------------------------------------
def test_a_dry_bulk_redrive_lists_the_selected_instances_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    mailer = Mailer("bob")
    failed = [_failed_mailing(engine, mailer) for _ in range(3)]
    running = engine.start("mailing", {"recipients": ["zed"]})  # not run: still running
    before = [engine.get(instance_id) for instance_id in failed]

    outcomes = engine.redrive_many("mailing", dry_run=True)
    assert outcomes == [
        RedriveOutcome(instance_id, "would redrive", "not_sent", "StateFailed")
        for instance_id in failed
    ]
    assert [engine.get(instance_id) for instance_id in failed] == before
    assert running.id not in {outcome.instance_id for outcome in outcomes}
    assert engine.redrive_many("mailing", error_type="Timeout") == []
    assert len(engine.redrive_many("mailing", state="send", limit=2)) == 2

    mailer.broken.clear()
    done = engine.redrive_many("mailing", dry_run=False, reason="bob's mailbox is back")
    assert [outcome.outcome for outcome in done] == ["redriven"] * 3
    engine.run_until_idle()
    assert {engine.get(instance_id).status for instance_id in failed} == {"succeeded"}
    assert engine.redrive_many("mailing") == []


def test_a_failure_led_into_a_failed_final_state_is_redriven_from_the_failed_work(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.task("jobs.work")(_raises(RuntimeError("no")))
    instance = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(instance.id).state == "broken"  # through its own `failed` transition

    [outcome] = engine.redrive_many("one_task", state="work", dry_run=False)
    assert (outcome.outcome, outcome.state) == ("redriven", "broken")
    assert engine.get(instance.id).state == "work"
    engine.task("jobs.work")(lambda data: {"ok": True})
    engine.run_until_idle()
    assert engine.get(instance.id).status == "succeeded"


def test_a_bulk_redrive_reports_the_instances_it_may_not_redrive(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    engine.task("flights.book")(lambda data: {"ok": True})
    engine.task("flights.cancel")(lambda data: {"ok": True})
    engine.task("hotels.book")(_raises(RuntimeError("fully booked")))
    instance = engine.start("saga", {})
    engine.run_until_idle()

    for dry_run in (True, False):
        [outcome] = engine.redrive_many("saga", dry_run=dry_run)
        assert (outcome.instance_id, outcome.outcome) == (instance.id, "refused")
        assert outcome.message.startswith("compensation ran for its failure (flights.cancel)")
    assert engine.get(instance.id).status == "failed"


def test_a_bulk_redrive_of_an_unknown_definition_is_not_found(engine: Engine) -> None:
    from engine import DefinitionNotFound

    with pytest.raises(DefinitionNotFound):
        engine.redrive_many("nothing_here")
