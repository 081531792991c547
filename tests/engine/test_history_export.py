"""`Engine.export_histories` on SQLite and PostgreSQL: every entry of every selected instance,
in the export format `check_histories` reads, page by page, filtered by version, status and
start time; what it writes replays through the definition the instances ran on."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.exports import Selection, exported
from statemachines import check_histories
from statemachines.errors import DefinitionNotFound, InvalidInput

DEFINITIONS = Path(__file__).parent / "definitions"


def _export(engine: Engine, name: str, **filters: Any) -> list[dict[str, Any]]:
    output = io.StringIO()
    written = engine.export_histories(name, output, **filters)
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert (written.instances, written.entries) == (
        len({line["instance"] for line in lines}),
        len(lines),
    )
    return lines


def _instances(lines: list[dict[str, Any]]) -> list[str]:
    """The instances of an export in the order they first appear."""
    return list(dict.fromkeys(line["instance"] for line in lines))


def test_an_export_holds_every_entry_of_every_instance_in_start_order(
    engine: Engine, clock: Any
) -> None:
    engine.deploy(DEFINITIONS / "counter.yaml")
    ids = []
    for amount in (3, 1, 2):
        instance = engine.start("counter", {"count": 0})
        for _ in range(amount):
            engine.send(instance.id, "add", {"amount": amount})
        ids.append(instance.id)
        clock.advance(60)
    engine.send(ids[1], "stop")
    lines = _export(engine, "counter")
    assert _instances(lines) == ids
    for instance in ids:
        expected = [
            {"instance": instance, "definition": "counter", "version": 1, **entry.to_json()}
            for entry in engine.history(instance)
        ]
        assert [line for line in lines if line["instance"] == instance] == expected
    output = io.StringIO()
    engine.export_histories("counter", output)
    output.seek(0)
    report = check_histories(DEFINITIONS / "counter.yaml", output)
    assert report.ok and [result.instance for result in report.results] == ids
    assert [result.status for result in report.results] == ["running", "succeeded", "running"]


def test_histories_read_from_the_engine_replay_through_their_definition(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "one_task.yaml")

    def work(data: dict[str, Any]) -> dict[str, Any]:
        if data["fail"]:
            raise ValueError("no")
        return {"done": True}

    engine.task("jobs.work")(work)
    ids = [engine.start("one_task", {"fail": fail}).id for fail in (False, True)]
    engine.run_until_idle()
    report = check_histories(DEFINITIONS / "one_task.yaml", {i: engine.history(i) for i in ids})
    assert report.ok
    assert [result.status for result in report.results] == ["succeeded", "failed"]


def test_an_export_selects_by_version_status_and_start_time(engine: Engine, clock: Any) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    old = engine.start("versioned", {}).id
    engine.send(old, "next")
    engine.send(old, "next")
    clock.advance(timedelta(days=1))
    engine.deploy(DEFINITIONS / "versioned_v2.yaml")
    midway = engine.start("versioned", {}).id
    clock.advance(timedelta(days=1))
    recent = engine.start("versioned", {}).id
    assert _instances(_export(engine, "versioned")) == [old, midway, recent]
    assert _instances(_export(engine, "versioned", version=1)) == [old]
    assert {line["version"] for line in _export(engine, "versioned", version=2)} == {2}
    assert _instances(_export(engine, "versioned", status="running")) == [midway, recent]
    assert _instances(_export(engine, "versioned", status="succeeded")) == [old]
    since = clock.now - timedelta(hours=1)
    assert _instances(_export(engine, "versioned", since=since)) == [recent]
    assert _export(engine, "versioned", version=1, status="running") == []


def test_instances_started_at_one_instant_are_each_exported_once_across_pages(
    engine: Engine,
) -> None:
    engine.deploy(DEFINITIONS / "counter.yaml")
    ids = engine.start_many("counter", [{"count": number} for number in range(7)])
    lines = list(exported(engine.store, Selection("counter"), page=3))
    assert _instances(lines) == sorted(ids)  # one created_at: the id breaks the tie
    assert len(lines) == 7 and {line["seq"] for line in lines} == {1}


def test_an_export_refuses_what_selects_nothing_by_mistake(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "counter.yaml")
    output = io.StringIO()
    with pytest.raises(DefinitionNotFound):
        engine.export_histories("missing", output)
    with pytest.raises(DefinitionNotFound):
        engine.export_histories("counter", output, version=2)
    with pytest.raises(InvalidInput, match="status 'done': choose one of scheduled, running"):
        engine.export_histories("counter", output, status="done")
    with pytest.raises(InvalidInput, match="aware"):
        engine.export_histories("counter", output, since=engine.clock().replace(tzinfo=None))
    assert output.getvalue() == ""


def test_a_redriven_and_reset_history_replays_through_its_definition(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "pipeline.yaml")
    failing = [True]

    def fetch(data: Any) -> Any:
        if failing[0]:
            raise OSError("network down")
        return {"rows": 3}

    engine.task("pipeline.fetch")(fetch)
    engine.task("pipeline.store")(lambda data: {"stored": data["rows"]})
    instance = engine.start("pipeline", {})
    engine.run_until_idle()
    failing[0] = False
    engine.redrive(instance.id, reason="network back")
    engine.run_until_idle()
    engine.reset(instance.id, "store", {"rows": 5}, reason="store again")
    engine.run_until_idle()
    assert engine.get(instance.id).context["stored"] == 5
    lines = _export(engine, "pipeline")
    report = check_histories(DEFINITIONS / "pipeline.yaml", lines)
    [result] = report.results
    assert (result.outcome, result.status, result.replayed) == ("replays", "succeeded", len(lines))
    text = (DEFINITIONS / "pipeline.yaml").read_text()
    guarded = "{done: {to: finished, if: result.stored > 4}}"
    changed = text.replace("store, on: {done: finished}", f"store, on: {guarded}")
    diverged = check_histories(changed, lines).results[0]
    assert diverged.outcome == "diverges" and diverged.divergence is not None
    stored = [
        line["seq"] for line in lines if (line["kind"], line["from_state"]) == ("task", "store")
    ]
    assert diverged.divergence.seq == stored[0]  # 3 rows stored after the redrive: no `done` now
