"""Overlays: an instance's states and path drawn over its definition, and a heat map."""

from __future__ import annotations

import time

import pytest
from diagram_svg import fills, groups, svg_tree, texts

import diagrams
import statemachines
from statemachines import Definition

ORDER_DATA = {"order_id": 7, "amount": 120, "express": True, "recipients": ["a@example.com"]}


@pytest.fixture(scope="module")
def order(examples: dict[str, Definition]) -> Definition:
    return examples["order_fulfillment"]


@pytest.fixture(scope="module")
def reviewing() -> diagrams.InstanceOverlay:
    """An order approved by hand, now packing, its label printed (as the engine reports it)."""
    return diagrams.InstanceOverlay.from_history(
        active=["ship", "ship.pack.pack", "ship.label.printed"],
        status="running",
        path=[
            (None, None, "validate_payment"),
            ("done", "validate_payment", "manual_review"),
            ("approve", "manual_review", "reserve_stock"),
            ("done", "reserve_stock", "ship"),
            ("done", "ship.label.buy_label", "ship.label.printed"),
        ],
    )


@pytest.fixture(scope="module")
def reviewing_svg(order: Definition, reviewing: diagrams.InstanceOverlay) -> bytes:
    return diagrams.render(order, "svg", overlay=reviewing)


def test_current_state_is_filled_unlike_any_other_state(order: Definition) -> None:
    overlay = diagrams.InstanceOverlay(
        active=["manual_review"],
        status="running",
        path=[(None, None, "validate_payment"), ("done", "validate_payment", "manual_review")],
    )
    svg = diagrams.render(order, "svg", overlay=overlay)
    nodes = groups(svg, "node")
    current = nodes["state-manual_review"]
    assert "active" in current.get("class", "").split()
    others = [e for key, e in nodes.items() if key.startswith("state-") and e is not current]
    assert all(fills(current).isdisjoint(fills(other)) for other in others)
    visited = nodes["state-validate_payment"]
    assert "visited" in visited.get("class", "").split()
    assert fills(visited) != fills(nodes["state-reserve_stock"])
    assert "active" not in nodes["state-reserve_stock"].get("class", "")


def test_transitions_taken_are_bold_and_numbered_in_order(order: Definition) -> None:
    path = [
        (None, None, "validate_payment"),
        ("done", "validate_payment", "manual_review"),
        ("approve", "manual_review", "reserve_stock"),
    ]
    overlay = diagrams.InstanceOverlay(["reserve_stock"], "running", path)
    svg = diagrams.render(order, "svg", overlay=overlay)
    edges = groups(svg, "edge")
    taken = {key: e for key, e in edges.items() if "taken" in e.get("class", "").split()}
    labels = {key: " ".join(texts(e)) for key, e in taken.items()}
    assert "(2) done [else]" in labels.values()
    assert "(3) approve" in labels.values()
    assert len(taken) == 3  # the start arrow, done [else], approve
    widths = {
        edge.find(".//{http://www.w3.org/2000/svg}path").get("stroke-width")  # type: ignore[union-attr]
        for edge in taken.values()
    }
    assert all(width and float(width) > 2 for width in widths)


def test_a_parallel_instance_marks_the_active_branch_states(
    reviewing: diagrams.InstanceOverlay, reviewing_svg: bytes
) -> None:
    active = set(reviewing.active)
    nodes = groups(reviewing_svg, "node")
    for path in active - {"ship"}:
        assert "active" in nodes[f"state-{path}"].get("class", "").split()
    assert "active" in groups(reviewing_svg, "cluster")["state-ship"].get("class", "").split()
    assert "visited" in nodes["state-ship.label.buy_label"].get("class", "").split()
    # Entering the parallel state entered each branch: both start arrows are drawn as taken.
    edges = groups(reviewing_svg, "edge")
    taken = [key for key, edge in edges.items() if "taken" in edge.get("class", "").split()]
    assert {"start-ship.pack.pack", "start-ship.label.buy_label"} <= set(taken)


def test_a_cancelled_or_failed_end_is_marked(order: Definition) -> None:
    path = [(None, None, "validate_payment"), ("done", "validate_payment", "manual_review")]
    for status in ("cancelled", "failed"):
        overlay = diagrams.InstanceOverlay(["manual_review"], status, path)
        svg = diagrams.render(order, "svg", overlay=overlay)
        node = groups(svg, "node")["state-manual_review"]
        assert f"instance {status}" in " ".join(texts(node))
        assert f"instance {status}" in " ".join(texts(svg_tree(svg)))


def test_an_internal_transition_taken_is_numbered_inside_its_state(
    examples: dict[str, Definition],
) -> None:
    door = examples["door_lock"]
    run = statemachines.simulate(door, [("code_entered", {"code": 1})] * 2, data={"code": 2})
    overlay = diagrams.InstanceOverlay(run.active, run.status, run.path)
    dot = diagrams.render(door, "dot", overlay=overlay).decode()
    assert "<B>(2, 3) code_entered [else] / set failures</B>" in dot


def test_heat_map_counts_states_and_weighs_edges(order: Definition) -> None:
    heat = diagrams.HeatOverlay(
        counts={"manual_review": 12, "await_pickup": 1},
        edges={
            ("validate_payment", "done", "reserve_stock"): 80,
            ("validate_payment", "done", "manual_review"): 20,
        },
    )
    svg = diagrams.render(order, "svg", overlay=heat)
    nodes = groups(svg, "node")
    assert "12 instances here" in " ".join(texts(nodes["state-manual_review"]))
    assert "1 instance here" in " ".join(texts(nodes["state-await_pickup"]))
    assert fills(nodes["state-manual_review"]) != fills(nodes["state-await_pickup"])
    edges = groups(svg, "edge")

    def width(edge_id_part: str) -> float:
        edge = next(e for key, e in edges.items() if edge_id_part in key)
        stroke = edge.find(".//{http://www.w3.org/2000/svg}path")
        assert stroke is not None
        return float(stroke.get("stroke-width") or 1)

    assert width("validate_payment-done-0-reserve_stock") > width(
        "validate_payment-done-1-manual_review"
    )


def test_an_overlay_of_a_cached_definition_is_quick(order: Definition) -> None:
    overlay = diagrams.InstanceOverlay(
        ["notify"],
        "running",
        [
            (None, None, "validate_payment"),
            ("done", "validate_payment", "reserve_stock"),
            ("done", "reserve_stock", "ship"),
            ("done", "ship", "notify"),
        ],
    )
    diagrams.to_dot(order)
    best = min(_timed(lambda: diagrams.to_dot(order, overlay=overlay)) for _ in range(5))
    assert best < 0.05


def _timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start
