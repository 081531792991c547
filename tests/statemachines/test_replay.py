"""Replay of recorded histories without a database: a history made by `simulate` replays
through its own definition to the same instance, and through a changed one it reports the
first entry where the new version would have done otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines.replay import RecordedEntry, entry_json, replay
from statemachines.simulate import START

DIFFS = Path(__file__).parent / "diffs"

COUNTER = """
name: tally
initial: counting
states:
  counting:
    on:
      add: {assign: {count: "context.count + event.amount"}}
      stop: stopped
  stopped: {final: true}
"""


def _recorded(run: statemachines.Run) -> list[RecordedEntry]:
    """A simulated run's history as the engine would record it (seq from 1, one time)."""
    return [
        RecordedEntry.from_json({**entry_json(entry), "seq": seq, "at": START.isoformat()})
        for seq, entry in enumerate(run.history, 1)
    ]


def _shop_run(**changes: Any) -> statemachines.Run:
    results = {"pay": {"ok": True}, "packing": {"box": 1}, "labelled": "L1", "mail.send": None}
    return statemachines.simulate(
        statemachines.load(DIFFS / "shop_v1.yaml"), ["arrived"], results=results | changes
    )


def test_a_history_replays_through_its_own_definition_to_the_same_instance() -> None:
    run = _shop_run()
    replayed = replay(statemachines.load(DIFFS / "shop_v1.yaml"), _recorded(run))
    assert replayed.divergence is None
    final = replayed.final
    assert final is not None
    assert (final.state, final.status, final.context) == (run.state, run.status, run.context)
    assert final.last == len(run.history)
    assert [replayed.at(seq) is not None for seq in range(1, final.last + 1)] == [True] * final.last


def test_each_point_holds_the_context_as_it_was_then() -> None:
    definition = statemachines.load(COUNTER)
    run = statemachines.simulate(
        definition, [("add", {"amount": 2}), ("add", {"amount": 5}), "stop"], data={"count": 0}
    )
    replayed = replay(definition, _recorded(run))
    counts = [point.context["count"] for point in replayed.points]
    assert counts == [0, 2, 7, 7]
    assert [point.revision for point in replayed.points] == [1, 2, 3, 4]
    assert replayed.at(3) is replayed.points[2]
    assert replayed.at(9) is None


def test_a_changed_target_is_reported_at_the_first_entry_it_changes() -> None:
    run = _shop_run()
    history = _recorded(run)
    text = (DIFFS / "shop_v1.yaml").read_text()
    changed = text.replace("{to: shipping, if: result.ok}", "{to: review, if: result.ok}")
    replayed = replay(statemachines.load(changed), history)
    divergence = replayed.divergence
    assert divergence is not None
    moved = next(entry for entry in history if entry.to_state == "shipping")
    assert divergence.seq == moved.seq
    assert divergence.recorded["to_state"] == "shipping"
    assert divergence.replayed is not None and divergence.replayed["to_state"] == "review"
    assert "to_state" in divergence.reason
    final = replayed.final
    assert final is not None and final.last == moved.seq - 1


def test_an_event_the_new_version_rejects_is_the_divergence() -> None:
    definition = statemachines.load(COUNTER)
    run = statemachines.simulate(definition, [("add", {"amount": 1}), "stop"], data={"count": 0})
    renamed = statemachines.load(COUNTER.replace("stop: stopped", "halt: stopped"))
    divergence = replay(renamed, _recorded(run)).divergence
    assert divergence is not None
    assert (divergence.seq, divergence.replayed) == (3, None)
    assert "rejects" in divergence.reason and "'stop'" in divergence.reason


def test_a_history_that_does_not_begin_with_its_start_replays_nothing() -> None:
    definition = statemachines.load(COUNTER)
    run = statemachines.simulate(definition, ["stop"], data={"count": 0})
    replayed = replay(definition, _recorded(run)[1:])
    assert replayed.points == []
    assert replayed.divergence is not None and "skips" in replayed.divergence.reason


@pytest.mark.parametrize("until", [1, 2])
def test_replay_stops_after_the_transaction_of_entry_until(until: int) -> None:
    definition = statemachines.load(COUNTER)
    run = statemachines.simulate(definition, ["stop"], data={"count": 0})
    replayed = replay(definition, _recorded(run), until=until)
    assert [point.last for point in replayed.points] == list(range(1, until + 1))


def test_a_recorded_entry_reads_back_from_its_json_line() -> None:
    line = json.dumps(
        {
            "seq": 4,
            "at": "2026-01-01T00:00:00+00:00",
            "kind": "event",
            "event": "add",
            "from_state": "counting",
            "to_state": "counting",
            "data": {"amount": 2},
        }
    )
    entry = RecordedEntry.from_json(json.loads(line))
    assert (entry.seq, entry.at, entry.event, entry.data) == (4, START, "add", {"amount": 2})
