"""`check_histories` and `assert_replays` without a database: histories recorded from
`simulate` runs, written in the export format (or as `turnout history --json` prints one),
replay through their own definition and report each instance a changed one diverges for."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import InvalidInput, assert_replays, check_histories
from statemachines.histories import history_line
from statemachines.replay import RecordedEntry, entry_json
from statemachines.simulate import START

RECORDED = Path(__file__).parent / "recorded"
TALLY = RECORDED / "tally.yaml"
SHOP = Path(__file__).parent / "diffs" / "shop_v1.yaml"


def _entries(run: statemachines.Run) -> list[dict[str, Any]]:
    """A simulated run's history as `HistoryEntry.to_json()` writes it (seq from 1)."""
    return [
        {"seq": seq, "at": START.isoformat(), **entry_json(entry)}
        for seq, entry in enumerate(run.history, 1)
    ]


def _tally(*events: Any) -> list[dict[str, Any]]:
    run = statemachines.simulate(statemachines.load(TALLY), list(events), data={"count": 0})
    return _entries(run)


def _lines(instance: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Export lines of one instance of tally version 1."""
    return [history_line(instance, "tally", 1, entry) for entry in entries]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _export(path: Path) -> Path:
    """Three tally instances: `a` adds twice and stops, `b` adds, `c` stops."""
    lines = (
        _lines("a", _tally(("add", {"amount": 2}), ("add", {"amount": 3}), "stop"))
        + _lines("b", _tally(("add", {"amount": 1})))
        + _lines("c", _tally("stop"))
    )
    return _write(path, lines)


def _changed(old: str, new: str) -> statemachines.Definition:
    text = TALLY.read_text(encoding="utf-8")
    assert old in text
    return statemachines.load(text.replace(old, new))


def test_histories_replay_through_the_definition_they_were_recorded_on(tmp_path: Path) -> None:
    report = check_histories(TALLY, _export(tmp_path / "tally.jsonl"))
    assert report.ok
    assert [result.instance for result in report.results] == ["a", "b", "c"]
    assert [result.outcome for result in report.results] == ["replays"] * 3
    first = report.results[0]
    assert (first.entries, first.replayed, first.state, first.status) == (
        4,
        4,
        "stopped",
        "succeeded",
    )
    assert first.version == 1
    assert report.summary() == "tally: 3 histories: 3 replay, 0 diverge"
    report.assert_replays()


def test_a_changed_definition_reports_each_divergent_instance_at_its_first_differing_entry(
    tmp_path: Path,
) -> None:
    path = _export(tmp_path / "tally.jsonl")
    report = check_histories(_changed("stop: stopped", "halt: stopped"), path)
    assert not report.ok
    assert [result.instance for result in report.divergent] == ["a", "c"]
    a, b, c = report.results
    assert b.ok and b.divergence is None
    assert a.divergence is not None and c.divergence is not None
    assert (a.divergence.seq, a.replayed, a.state) == (4, 3, "counting")
    assert (c.divergence.seq, c.replayed) == (2, 1)
    assert a.divergence.recorded["event"] == "stop"
    assert "rejects" in a.divergence.reason and "'stop'" in a.divergence.reason
    assert (a.source, c.source) == (f"{path}:1", f"{path}:7")
    lines = report.summary().splitlines()
    assert lines[0] == "tally: 3 histories: 1 replays, 2 diverge"
    assert lines[1].startswith(f"instance a ({path}:1) diverges at entry 4: the definition rejects")
    assert lines[2] == "    recorded: " + json.dumps(a.divergence.recorded)
    printed = report.to_json()
    assert (printed["ok"], printed["histories"], printed["divergent"]) == (False, 3, 2)
    assert printed["results"][0]["divergence"] == a.divergence.to_json()
    assert printed["results"][1]["outcome"] == "replays"


def test_a_divergence_shows_the_entry_as_recorded_and_as_replayed() -> None:
    results = {"pay": {"ok": True}, "packing": {"box": 1}, "labelled": "L1", "mail.send": None}
    run = statemachines.simulate(statemachines.load(SHOP), ["arrived"], results=results)
    text = SHOP.read_text(encoding="utf-8")
    changed = text.replace("{to: shipping, if: result.ok}", "{to: review, if: result.ok}")
    report = check_histories(changed, [_entries(run)])
    (result,) = report.divergent
    assert result.instance == "#1"
    divergence = result.divergence
    assert divergence is not None and divergence.replayed is not None
    assert (divergence.recorded["to_state"], divergence.replayed["to_state"]) == (
        "shipping",
        "review",
    )
    assert result.describe().splitlines() == [
        f"instance #1 diverges at entry 2: {divergence.reason}",
        "    recorded: " + json.dumps(divergence.recorded),
        "    replayed: " + json.dumps(divergence.replayed),
    ]


def test_interleaved_lines_are_grouped_by_instance_and_replayed_in_seq_order(
    tmp_path: Path,
) -> None:
    first = _lines("first", _tally(("add", {"amount": 1}), "stop"))
    second = _lines("second", _tally(("add", {"amount": 4}), ("add", {"amount": 5})))
    mixed = [line for pair in zip(reversed(first), second, strict=True) for line in pair]
    report = check_histories(TALLY, _write(tmp_path / "live.jsonl", mixed))
    assert report.ok
    assert {result.instance: result.status for result in report.results} == {
        "first": "succeeded",
        "second": "running",
    }


def test_a_history_printed_as_one_json_array_is_the_instance_named_after_its_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "0f3a9c.json"
    path.write_text(json.dumps(_tally(("add", {"amount": 1}), "stop"), indent=2) + "\n")
    (result,) = check_histories(TALLY, path).results
    assert (result.instance, result.source, result.outcome) == ("0f3a9c", str(path), "replays")
    assert result.version is None


def test_a_directory_is_read_file_by_file_in_name_order(tmp_path: Path) -> None:
    _write(tmp_path / "b.jsonl", _lines("from-b", _tally("stop")))
    (tmp_path / "a.json").write_text(json.dumps(_tally(("add", {"amount": 1}))))
    (tmp_path / "notes.txt").write_text("not a history")
    report = check_histories(TALLY, tmp_path)
    assert [result.instance for result in report.results] == ["a", "from-b"]
    assert report.ok


def test_histories_given_in_python_replay_as_the_files_do() -> None:
    recorded = [RecordedEntry.from_json(entry) for entry in _tally("stop")]
    lines = _lines("x", _tally("stop")) + _lines("y", _tally(("add", {"amount": 1})))
    stream = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
    assert [r.instance for r in check_histories(TALLY, [recorded]).results] == ["#1"]
    assert [r.instance for r in check_histories(TALLY, {"k1": _tally()}).results] == ["k1"]
    assert [r.instance for r in check_histories(TALLY, lines).results] == ["x", "y"]
    report = check_histories(TALLY, stream)
    assert [(r.instance, r.source) for r in report.results] == [
        ("x", "<stream>:1"),
        ("y", "<stream>:3"),
    ]
    assert report.ok


def test_assert_replays_fails_with_a_message_listing_the_divergent_instances(
    tmp_path: Path,
) -> None:
    path = _export(tmp_path / "tally.jsonl")
    changed = _changed("stop: stopped", "halt: stopped")
    with pytest.raises(AssertionError) as caught:
        check_histories(changed, path).assert_replays()
    message = str(caught.value).splitlines()
    assert message[0] == "2 of 3 histories do not replay through tally:"
    assert message[1].startswith(f"instance a ({path}:1) diverges at entry 4:")
    assert [line for line in message if line.startswith("instance ")] == [
        message[1],
        next(line for line in message if line.startswith(f"instance c ({path}:7)")),
    ]
    with pytest.raises(AssertionError, match="^2 of 3 histories do not replay"):
        assert_replays(changed, path)
    report = assert_replays(TALLY, path)
    assert report.ok and len(report.results) == 3


def test_an_assertion_lists_at_most_its_limit_and_counts_the_rest() -> None:
    histories = {f"i{number:02}": _tally("stop") for number in range(25)}
    report = check_histories(_changed("stop: stopped", "halt: stopped"), histories)
    with pytest.raises(AssertionError) as caught:
        report.assert_replays()
    message = str(caught.value).splitlines()
    assert message[0] == "25 of 25 histories do not replay through tally:"
    assert sum(line.startswith("instance ") for line in message) == 20
    assert message[-1] == "... and 5 more"
    assert report.summary(limit=3).splitlines()[-1] == "... and 22 more"


def test_an_operators_entry_ends_replay_without_failing_the_check() -> None:
    entries = _tally(("add", {"amount": 1}))
    moved_on = {"seq": 3, "at": START.isoformat(), "kind": "migrated", "data": {"to_version": 2}}
    report = check_histories(TALLY, {"moved": [*entries, moved_on], "plain": _tally("stop")})
    moved = report.results[0]
    assert (moved.outcome, moved.ok, moved.replayed) == ("stops", True, 2)
    assert report.ok and report.divergent == [] and report.stopped == [moved]
    assert report.summary().splitlines() == [
        "tally: 2 histories: 1 replays, 0 diverge, 1 stops at an operator's entry",
        "instance moved replays up to entry 2; entry 3 is an operator's 'migrated', which the "
        "definition alone does not replay: a 'migrated' entry moved the instance to another "
        "version",
    ]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "tally.jsonl:2: not valid JSON"),
        ('["a", "list"]', "tally.jsonl:2: each line must be a history entry"),
        ('{"instance": "a", "seq": 2, "at": "2026-01-01T00:00:00Z"}', "tally.jsonl:2: "),
        ('{"instance": "a", "seq": 2, "at": "yesterday", "kind": "event"}', "tally.jsonl:2: "),
    ],
)
def test_a_line_that_is_not_a_history_entry_is_refused_by_file_and_line(
    tmp_path: Path, line: str, says: str
) -> None:
    path = tmp_path / "tally.jsonl"
    start = json.dumps(_lines("a", _tally())[0])
    path.write_text(f"{start}\n{line}\n")
    with pytest.raises(InvalidInput) as caught:
        check_histories(TALLY, path)
    assert str(caught.value).startswith(f"{tmp_path}/{says}")


def test_histories_of_another_definition_are_refused(tmp_path: Path) -> None:
    lines = [history_line("a", "shop", 1, entry) for entry in _tally()]
    with pytest.raises(InvalidInput, match="instance a is a history of 'shop', not of 'tally'"):
        check_histories(TALLY, _write(tmp_path / "shop.jsonl", lines))


@pytest.mark.parametrize("given", ["empty.jsonl", "folder", "list"])
def test_no_history_at_all_is_refused_rather_than_passed(tmp_path: Path, given: str) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "folder").mkdir()
    histories: Any = [] if given == "list" else tmp_path / given
    with pytest.raises(InvalidInput, match="no history to replay"):
        check_histories(TALLY, histories)


def test_a_large_entry_is_cut_short_in_the_summary_and_kept_whole_in_the_json() -> None:
    note = "x" * 5000
    history = _tally(("add", {"amount": 1, "note": note}))
    report = check_histories(_changed("add: {assign", "plus: {assign"), [history])
    (result,) = report.divergent
    recorded = result.describe().splitlines()[1]
    assert recorded.startswith('    recorded: {"kind": "event", "event": "add"')
    assert len(recorded) == len("    recorded: ") + 400 and recorded.endswith("…")
    divergence = report.to_json()["results"][0]["divergence"]
    assert divergence["recorded"]["data"]["note"] == note
