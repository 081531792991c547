"""A heat map's counts: its title says how many instances it stands for, finished ones and those
inside nested states included, and the final states say how many ended there."""

from __future__ import annotations

from pathlib import Path

import pytest
from diagram_svg import groups, texts

import diagrams
from engine import Engine
from statemachines import Definition

ENGINE_DEFINITIONS = Path(__file__).parent.parent / "engine" / "definitions"


def all_text(svg: bytes) -> str:
    return " ".join(texts(next(iter(groups(svg, "graph").values()))))


@pytest.fixture(scope="module")
def order(examples: dict[str, Definition]) -> Definition:
    return examples["order_fulfillment"]


def test_a_map_of_finished_instances_is_not_titled_zero(order: Definition) -> None:
    heat = diagrams.HeatOverlay(ended={"completed": 9, "declined": 3})
    svg = diagrams.render(order, "svg", overlay=heat)
    title = all_text(svg)
    assert "order_fulfillment · 12 instances (all finished)" in title
    assert "0 instances" not in title
    nodes = groups(svg, "node")
    assert "9 ended here" in " ".join(texts(nodes["state-completed"]))
    assert "3 ended here" in " ".join(texts(nodes["state-declined"]))
    assert "ended" in nodes["state-completed"].get("class", "").split()


def test_the_title_adds_running_and_finished_instances(order: Definition) -> None:
    heat = diagrams.HeatOverlay(counts={"manual_review": 2, "ship": 1}, ended={"completed": 1})
    assert heat.title == "4 instances (3 running, 1 finished)"
    assert "order_fulfillment · 4 instances (3 running, 1 finished)" in all_text(
        diagrams.render(order, "svg", overlay=heat)
    )
    assert diagrams.HeatOverlay(counts={"manual_review": 1}).title == "1 instance"
    assert diagrams.HeatOverlay().title == "0 instances"
    # An instance in a parallel state is counted there and in each branch: once in the title.
    branches = diagrams.HeatOverlay(counts={"ship": 2, "ship.pack": 2, "ship.label.printed": 2})
    assert branches.title == "2 instances"
    assert diagrams.HeatOverlay(counts={"a.b": 5}, unfinished=5).title == "5 instances"


@pytest.fixture
def engine(store_url: str) -> Engine:
    return Engine(store_url)


def test_the_engines_heat_map_counts_every_instance(engine: Engine) -> None:
    try:
        engine.deploy(ENGINE_DEFINITIONS / "signup.yaml")
        ids = engine.start_many("signup", [{"email": f"{n}@x"} for n in range(15)])
        for instance_id in ids[:12]:
            engine.send(instance_id, "reject")
        svg = engine.heat_diagram("signup")
        assert "signup · 15 instances (3 running, 12 finished)" in all_text(svg)
        assert "12 ended here" in " ".join(texts(groups(svg, "node")["state-closed"]))
        for instance_id in ids[12:]:
            engine.send(instance_id, "reject")
        assert "signup · 15 instances (all finished)" in all_text(engine.heat_diagram("signup"))
    finally:
        engine.close()


def test_instances_inside_nested_states_count_in_the_title(engine: Engine) -> None:
    try:
        engine.deploy(ENGINE_DEFINITIONS / "nested_order.yaml")
        ids = engine.start_many("nested_order", [{} for _ in range(4)])
        engine.send(ids[0], "add")
        engine.send(ids[1], "cancel")
        svg = engine.heat_diagram("nested_order")
        assert "nested_order · 4 instances (3 running, 1 finished)" in all_text(svg)
    finally:
        engine.close()
