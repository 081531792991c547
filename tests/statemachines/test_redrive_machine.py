"""Redrive and reset on the compiled machine, without a database: a redrive restarts a failed
instance where it failed and runs again only the work that had not succeeded (foreach items,
parallel regions); a reset moves an instance to a state chosen by hand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import CompiledMachine, Snapshot, Step, compile_definition
from statemachines.errors import InvalidInput, RedriveRefused, ResetRefused, UnknownState
from statemachines.steps import TaskOrder

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=3)
REPAIRS = Path(__file__).parent / "repairs"


class Bounce(Exception):
    """What a handler raises to fail its task."""


HOLD = object()  # what a handler returns for a task still at work: it is not answered


Handler = Callable[[TaskOrder], Any]


class Driver:
    """Answers the tasks of one instance, in the order they were ordered, counting every
    run of each (task name, item) until none is left or the instance has ended; a task
    whose handler returns HOLD stays unanswered."""

    def __init__(self, name: str) -> None:
        self.machine: CompiledMachine = compile_definition(statemachines.load(REPAIRS / name))
        self.runs: Counter[tuple[str, Any]] = Counter()

    def start(self, context: dict[str, Any], handler: Handler) -> Step:
        return self.drive(self.machine.start(context, NOW), handler)

    def drive(self, step: Step, handler: Handler) -> Step:
        pending, gone = list(step.tasks), set(step.cancelled)
        while pending and step.status in ("running", "compensating"):
            task = pending.pop(0)
            if (task.state_path, task.activation) in gone and task.kind == "task":
                continue
            self.runs[(task.name, task.item)] += 1
            ref = (task.state_path, task.activation, task.item)
            try:
                result = handler(task)
            except Bounce as exc:
                error = {"type": "Bounce", "message": str(exc)}
                step = self.machine.task_failed(step.snapshot, ref, error, 1, NOW)
            else:
                if result is HOLD:
                    continue
                step = self.machine.task_done(step.snapshot, ref, result, NOW)
            pending.extend(step.tasks)
            gone.update(step.cancelled)
        return step


def bounce_bad(task: TaskOrder) -> Any:
    """Mail to a person whose name starts with 'bad' bounces."""
    if str(task.input).startswith("bad"):
        raise Bounce(f"no mailbox for {task.input}")
    return f"sent:{task.input}"


def deliver_all(task: TaskOrder) -> Any:
    return f"sent:{task.input}"


def succeed(task: TaskOrder) -> Any:
    return {"ok": task.name}


PEOPLE = ["ann", "bad_bob", "cy", "bad_dee", "eve"]


# -- redrive ---------------------------------------------------------------------------------
def test_redrive_runs_again_only_the_foreach_items_without_a_result() -> None:
    driver = Driver("mailing.yaml")
    failed = driver.start({"people": PEOPLE}, bounce_bad)
    assert (failed.status, failed.state) == ("failed", "not_sent")
    # Two at a time: ann succeeded, and bad_bob failed the state with cy's task just ordered.
    assert driver.runs == {("mail.send", 0): 1, ("mail.send", 1): 1}

    redriven = driver.machine.redrive(failed.snapshot, "mailbox fixed", LATER)
    assert (redriven.status, redriven.state) == ("running", "send")
    assert [task.item for task in redriven.tasks] == [1, 2]  # concurrency 2, failed first
    done = driver.drive(redriven, deliver_all)

    assert (done.status, done.state) == ("succeeded", "sent")
    assert done.context["receipts"] == [f"sent:{person}" for person in PEOPLE]
    ran = {item: count for (_, item), count in driver.runs.items()}
    assert ran == {0: 1, 1: 2, 2: 1, 3: 1, 4: 1}  # ann's receipt is kept


def test_redrive_goes_back_from_the_failed_final_state_to_the_state_whose_work_failed() -> None:
    driver = Driver("mailing.yaml")
    failed = driver.start({"people": PEOPLE}, bounce_bad)
    error = failed.machine["error"]
    redriven = driver.machine.redrive(failed.snapshot, "mailbox fixed", LATER)
    [entry] = redriven.history[:1]
    assert (entry.kind, entry.from_state, entry.to_state) == ("redrive", "not_sent", "send")
    assert entry.data == {
        "reason": "mailbox fixed",
        "error": error,
        "rerun": ["send"],
        "items": {"send": [1, 2]},
    }
    assert "error" not in redriven.machine and "redrive" not in redriven.machine
    assert redriven.seq == failed.seq + len(redriven.history)


def test_a_redrive_gives_a_tolerant_foreach_its_failed_items_and_their_tolerance_back() -> None:
    driver = Driver("tolerant.yaml")
    failed = driver.start({"people": PEOPLE}, bounce_bad)
    assert failed.status == "failed"
    assert failed.machine["error"]["type"] == "ItemsFailed"

    def only_bob_bounces(task: TaskOrder) -> Any:
        return bounce_bad(task) if task.item == 1 else "late:ok"

    done = driver.drive(driver.machine.redrive(failed.snapshot, None, LATER), only_bob_bounces)

    assert done.status == "succeeded"
    receipts = done.context["receipts"]
    assert receipts[0] == "sent:ann" and receipts[2] == "sent:cy" and receipts[1] is None
    assert done.context["bounced"] == [
        {"index": 1, "error": {"type": "Bounce", "message": "no mailbox for bad_bob"}}
    ]
    assert driver.runs[("mail.send", 0)] == 1 and driver.runs[("mail.send", 2)] == 1
    assert driver.runs[("mail.send", 1)] == 2 and driver.runs[("mail.send", 3)] == 2


def test_redrive_runs_the_failed_task_again_and_restarts_the_timers_around_it() -> None:
    driver = Driver("billing.yaml")

    def receipt_fails(task: TaskOrder) -> Any:
        if task.name == "pay.receipt":
            raise Bounce("printer jammed")
        return {"charged": 10}

    failed = driver.start({}, receipt_fails)
    assert (failed.status, failed.machine["error"]["state"]) == ("failed", "work.receipt")
    assert failed.active == []

    redriven = driver.machine.redrive(failed.snapshot, "printer fixed", LATER)
    assert redriven.active == ["work", "work.receipt"]
    assert [task.name for task in redriven.tasks] == ["pay.receipt"]
    assert sorted((timer.state_path, timer.due) for timer in redriven.timers) == [
        ("work", LATER + timedelta(hours=1)),
        ("work.receipt", LATER + timedelta(minutes=10)),
    ]
    done = driver.drive(redriven, succeed)
    assert (done.status, done.state) == ("succeeded", "paid")
    assert driver.runs == {("pay.charge", None): 1, ("pay.receipt", None): 2}
    assert done.context["charge"] == {"charged": 10}


def test_redrive_of_a_parallel_state_keeps_its_finished_regions_and_runs_the_others() -> None:
    driver = Driver("fork.yaml")
    machine = driver.machine

    def slow_and_broken(task: TaskOrder) -> Any:
        if task.name == "job.broken":
            raise Bounce("disk full")
        return HOLD if task.name == "job.slow" else succeed(task)

    step = driver.start({}, slow_and_broken)  # quick succeeds, slow works on, broken fails
    assert step.status == "failed"
    assert step.machine["error"]["state"] == "fork.broken.broken"

    redriven = machine.redrive(step.snapshot, "disk cleaned", LATER)
    assert [task.name for task in redriven.tasks] == ["job.slow", "job.broken"]
    assert "fork.quick.finished" in redriven.active
    assert redriven.history[0].data["rerun"] == ["fork.slow.slow", "fork.broken.broken"]
    done = driver.drive(redriven, succeed)
    assert (done.status, done.state) == ("succeeded", "joined")
    assert done.context["joined"] == {
        "quick": {"ok": "job.quick"},
        "broken": {"ok": "job.broken"},
        "slow": {"ok": "job.slow"},
    }
    assert driver.runs == {
        ("job.quick", None): 1,
        ("job.broken", None): 2,
        ("job.slow", None): 2,
    }


@pytest.mark.parametrize("ending", ["running", "succeeded", "cancelled"])
def test_redrive_is_refused_for_an_instance_that_is_not_failed(ending: str) -> None:
    driver = Driver("review.yaml")
    step = driver.machine.start({}, NOW)
    if ending == "succeeded":
        step = driver.drive(driver.machine.send(step.snapshot, "approve", None, NOW), succeed)
    elif ending == "cancelled":
        step = driver.machine.cancel(step.snapshot, "not needed", NOW)
    assert step.status == ending
    with pytest.raises(RedriveRefused, match=f"it is {ending}; only a failed instance"):
        driver.machine.redrive(step.snapshot, None, LATER)


def test_redrive_is_refused_for_an_instance_that_ended_in_its_chosen_failed_state() -> None:
    driver = Driver("review.yaml")
    refused = driver.machine.send(driver.machine.start({}, NOW).snapshot, "refuse", None, NOW)
    assert refused.status == "failed"
    with pytest.raises(RedriveRefused, match="`final: failed` state 'refused'") as caught:
        driver.machine.redrive(refused.snapshot, None, LATER)
    assert "reset it" in caught.value.reason


def test_redrive_is_refused_when_compensation_ran_for_the_failure() -> None:
    driver = Driver("saga.yaml")

    def hotel_full(task: TaskOrder) -> Any:
        if task.name == "hotels.book":
            raise Bounce("no room")
        return "ok"

    failed = driver.start({}, hotel_full)
    assert failed.status == "failed"
    assert driver.runs[("flights.cancel", None)] == 1
    with pytest.raises(
        RedriveRefused, match=r"compensation ran for its failure \(flights.cancel\)"
    ):
        driver.machine.redrive(failed.snapshot, None, LATER)


def test_an_instance_redriven_can_fail_again_and_be_redriven_again() -> None:
    driver = Driver("mailing.yaml")
    failed = driver.start({"people": PEOPLE}, bounce_bad)
    again = driver.drive(driver.machine.redrive(failed.snapshot, None, LATER), bounce_bad)
    assert (again.status, again.state) == ("failed", "not_sent")
    done = driver.drive(driver.machine.redrive(again.snapshot, None, LATER), deliver_all)
    assert done.status == "succeeded"
    assert driver.runs[("mail.send", 0)] == 1 and driver.runs[("mail.send", 1)] == 3


def test_an_instance_failed_before_failure_points_were_kept_enters_its_failed_state_afresh() -> (
    None
):
    driver = Driver("billing.yaml")
    machine = {
        "active": {},
        "counter": 4,
        "results": {},
        "foreach": {},
        "compensations": [],
        "state": "work",
        "error": {"type": "Bounce", "message": "jam", "state": "work.receipt", "seq": 6},
    }
    redriven = driver.machine.redrive(Snapshot(machine, {}, "failed", 6), None, LATER)
    assert redriven.active == ["work", "work.receipt"]
    assert [task.name for task in redriven.tasks] == ["pay.receipt"]
    assert redriven.machine["counter"] == 6


def test_an_instance_failed_by_an_engine_fault_runs_the_configuration_it_kept_again() -> None:
    driver = Driver("billing.yaml")
    running = driver.machine.start({}, NOW)
    # An engine fault fails the instance as it was read: its configuration stays.
    error = {"type": "ValueNotStorable", "message": "a set", "state": "work", "seq": 3}
    faulted = Snapshot({**running.machine, "error": error}, running.context, "failed", 3)
    redriven = driver.machine.redrive(faulted, None, LATER)
    assert redriven.active == ["work", "work.charge"]
    assert [task.name for task in redriven.tasks] == ["pay.charge"]


# -- reset -----------------------------------------------------------------------------------
def test_reset_enters_a_nested_state_with_the_states_around_it_and_patches_the_context() -> None:
    driver = Driver("billing.yaml")
    running = driver.machine.start({"amount": 10, "note": "x"}, NOW)
    moved = driver.machine.reset(
        running.snapshot, "work.receipt", {"amount": 12}, "charged by phone", LATER
    )
    assert moved.active == ["work", "work.receipt"]
    assert moved.context == {"amount": 12, "note": "x"}
    assert [task.name for task in moved.tasks] == ["pay.receipt"]
    assert sorted(timer.state_path for timer in moved.timers) == ["work", "work.receipt"]
    # Every state it was in is left, and with it the work of those entries.
    left = {(path, activation) for path, activation in running.machine["active"].items()}
    assert left <= set(moved.cancelled)
    [entry] = moved.history[:1]
    assert (entry.kind, entry.from_state, entry.to_state) == ("reset", "work", "work.receipt")
    assert entry.data == {
        "reason": "charged by phone",
        "from": ["work.charge"],
        "to": "work.receipt",
        "status": "running",
        "patch": {"amount": 12},
    }


def test_reset_reopens_a_failed_instance_and_forgets_its_failure() -> None:
    driver = Driver("review.yaml")
    refused = driver.machine.send(driver.machine.start({}, NOW).snapshot, "refuse", None, NOW)
    moved = driver.machine.reset(refused.snapshot, "checking", None, "refused by mistake", LATER)
    assert (moved.status, moved.active) == ("running", ["checking"])
    assert "error" not in moved.machine
    assert driver.drive(moved, succeed).status == "succeeded"


def test_reset_to_a_final_state_ends_the_instance() -> None:
    driver = Driver("review.yaml")
    running = driver.machine.start({}, NOW)
    ended = driver.machine.reset(running.snapshot, "approved", None, "approved on paper", LATER)
    assert (ended.status, ended.state) == ("succeeded", "approved")


def test_reset_to_an_unknown_state_names_the_states_there_are() -> None:
    driver = Driver("billing.yaml")
    running = driver.machine.start({}, NOW)
    with pytest.raises(UnknownState) as caught:
        driver.machine.reset(running.snapshot, "work.refund", None, "why not", LATER)
    assert caught.value.known == [
        "work",
        "work.charge",
        "work.receipt",
        "work.finished",
        "paid",
        "late",
    ]
    assert "'billing' has no state 'work.refund'; its states are: work, work.charge" in str(
        caught.value
    )


@pytest.mark.parametrize("reason", ["", "   "])
def test_reset_needs_a_reason(reason: str) -> None:
    driver = Driver("billing.yaml")
    running = driver.machine.start({}, NOW)
    with pytest.raises(InvalidInput, match="needs a reason"):
        driver.machine.reset(running.snapshot, "paid", None, reason, LATER)


def test_reset_of_an_instance_running_its_compensations_is_refused() -> None:
    driver = Driver("saga.yaml")
    step = driver.machine.start({}, NOW)
    [flight] = step.tasks
    step = driver.machine.task_done(
        step.snapshot, (flight.state_path, flight.activation, None), 1, NOW
    )
    [hotel] = step.tasks
    ref = (hotel.state_path, hotel.activation, None)
    compensating = driver.machine.task_failed(step.snapshot, ref, {"type": "Full"}, 1, NOW)
    assert compensating.status == "compensating"
    with pytest.raises(ResetRefused, match="running its compensations"):
        driver.machine.reset(compensating.snapshot, "booked", None, "stuck", LATER)
