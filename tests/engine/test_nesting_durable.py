"""Nested states on the durable engine (SQLite and PostgreSQL): full names everywhere, the
work of exited states dropped in the database, history that survives a restart, and a
parallel state ended from one of its regions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"


def test_instances_show_full_names_and_list_by_any_ancestor(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_order")
    waiting = engine.start("nested_order")
    carted = engine.send(engine.start("nested_order").id, "add")
    assert (waiting.state, waiting.active) == ("shopping", ["shopping.browsing"])
    assert carted.active == ["shopping.cart"]
    assert engine.allowed(carted) == ["checkout", "back", "cancel", "pause"]

    def listed(state: str) -> set[str]:
        return {item.id for item in engine.instances(definition="nested_order", state=state)}

    assert listed("shopping") == {waiting.id, carted.id}
    assert listed("shopping.cart") == {carted.id}
    assert listed("shopping.browsing") == {waiting.id}
    assert listed("shopping.car") == set()


def test_an_outer_event_drops_the_tasks_and_timers_of_every_state_it_exits(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("nested_order")
    instance = engine.start("nested_order")
    engine.send(instance.id, "add")
    engine.send(instance.id, "checkout")
    cancelled = engine.send(instance.id, "cancel")
    assert (cancelled.status, cancelled.active) == ("failed", ["cancelled"])
    engine.task("payments.charge")(lambda value: {"charged": True})
    assert engine.run_until_idle() == 0  # the charge was dropped with `shopping.paying`
    clock.advance(timedelta(hours=2))
    assert engine.fire_due_timers() == 0  # and the phase timer with `shopping`


def test_a_phase_timer_fires_while_any_state_inside_is_active(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("nested_order")
    instance = engine.start("nested_order")
    engine.send(instance.id, "add")
    clock.advance(timedelta(minutes=61))
    assert engine.fire_due_timers() == 1
    assert engine.get(instance.id).active == ["expired"]


def test_shallow_history_survives_a_new_engine_on_the_same_database(
    store_url: str, clock: Any
) -> None:
    first = Engine(store_url, clock=clock)
    first.deploy(DEFINITIONS / "nested_order.yaml")
    instance = first.start("nested_order")
    first.send(instance.id, "add")
    assert first.send(instance.id, "pause").active == ["paused"]
    first.close()
    second = Engine(store_url, clock=clock)
    try:
        resumed = second.send(instance.id, "resume")
        assert resumed.active == ["shopping.cart"]
        steps = [(entry.from_state, entry.to_state) for entry in second.history(instance.id)]
        assert steps[-1] == ("paused", "shopping.resume")
    finally:
        second.close()


def test_a_region_that_leaves_its_parallel_state_cancels_the_other_regions_tasks(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_order")
    instance = engine.start("nested_order")
    engine.send(instance.id, "add")
    engine.send(instance.id, "checkout")
    engine.task("payments.charge")(lambda value: {"charged": True})
    assert engine.run_until_idle() == 1
    shipping = engine.get(instance.id)
    assert shipping.active == ["shipping.pack.packing", "shipping.post.waiting"]
    lost = engine.send(instance.id, "lost")
    assert (lost.status, lost.active) == ("failed", ["lost"])
    engine.task("warehouse.pack")(lambda value: None)
    assert engine.run_until_idle() == 0  # the packing task went with the parallel state


def test_deep_history_survives_a_new_engine_and_restores_every_region(
    store_url: str, clock: Any
) -> None:
    first = Engine(store_url, clock=clock)
    first.deploy(DEFINITIONS / "deep_history.yaml")
    instance = first.start("deep_history")
    first.send(instance.id, "step")
    first.send(instance.id, "turn")
    assert first.send(instance.id, "pause").active == ["paused"]
    first.close()
    second = Engine(store_url, clock=clock)
    try:
        resumed = second.send(instance.id, "resume")
        assert resumed.active == ["work.stage.left.l2", "work.stage.right.r2"]
        assert second.send(instance.id, "step").active == ["over"]
    finally:
        second.close()


def test_a_regions_own_timer_fires_and_is_dropped_with_its_parallel_state(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("deep_history")
    fired = engine.start("deep_history")
    clock.advance(timedelta(minutes=61))
    assert engine.fire_due_timers() == 1
    assert (engine.get(fired.id).status, engine.get(fired.id).active) == ("succeeded", ["over"])
    left = engine.start("deep_history")
    engine.send(left.id, "pause")
    clock.advance(timedelta(hours=2))
    assert engine.fire_due_timers() == 0  # the region's timer went with `work.stage`
    assert engine.get(left.id).active == ["paused"]


def test_the_heat_map_of_a_nested_chart_counts_its_active_nested_states(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_order")
    carted = engine.start("nested_order")
    engine.send(carted.id, "add")
    engine.start("nested_order")
    svg = engine.heat_diagram("nested_order").decode()

    def heated(path: str) -> bool:
        opening = re.search(rf'<g id="state&#45;{re.escape(path)}" class="([^"]*)"', svg)
        return opening is not None and "heat" in opening.group(1).split()

    assert heated("shopping.cart") and heated("shopping.browsing")
    assert not heated("shopping.paying") and not heated("paused")
