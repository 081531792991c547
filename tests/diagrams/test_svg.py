"""What a reader and a web page rely on in the SVG: every state and event there, findable by id."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from diagram_svg import groups, svg_tree, texts

import diagrams
import statemachines
from statemachines import Definition, TurnoutError

HERE = Path(__file__).parent


def css(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def test_every_state_of_each_example_is_an_svg_element_named_for_it(
    examples: dict[str, Definition], example_svgs: dict[str, bytes]
) -> None:
    for name, definition in examples.items():
        svg = example_svgs[name]
        drawn = groups(svg, "node") | groups(svg, "cluster")
        for state in definition.walk():
            element = drawn.get(f"state-{state.path}")
            assert element is not None, f"{name}: no element for state {state.path}"
            assert state.name in " ".join(texts(element)) + element.get("class", "")


def test_every_event_of_each_example_is_labelled_and_classed(
    examples: dict[str, Definition], example_svgs: dict[str, bytes]
) -> None:
    for name, definition in examples.items():
        svg = example_svgs[name]
        words = " ".join(texts(svg_tree(svg)))
        classes = " ".join(
            element.get("class", "") for element in svg_tree(svg).iter() if element.get("class")
        )
        for state in definition.walk():
            for event, _ in state.on:
                assert event in words, f"{name}: event {event} of {state.path} not shown"
                assert f"event-{css(event)}" in classes
            for timer in state.after:
                assert f"after {timer.key}" in words
                assert f"event-{css(timer.event)}" in classes


def test_svg_edges_carry_their_source_target_and_trigger(
    example_svgs: dict[str, bytes],
) -> None:
    edges = groups(example_svgs["order_fulfillment"], "edge")
    approve = [e for e in edges.values() if "event-approve" in e.get("class", "").split()]
    assert len(approve) == 1
    assert {"from-manual_review", "to-reserve_stock", "trigger-event"} <= set(
        approve[0].get("class", "").split()
    )
    timers = [e for e in edges.values() if "trigger-timer" in e.get("class", "").split()]
    assert {"from-manual_review", "to-declined"} <= set(timers[0].get("class", "").split())


def test_each_construct_has_its_own_look(example_svgs: dict[str, bytes]) -> None:
    order = example_svgs["order_fulfillment"]
    nodes = groups(order, "node")
    assert "kind-choice" in nodes["state-route"].get("class", "")
    assert nodes["state-route"].find(".//{http://www.w3.org/2000/svg}polygon") is not None
    assert "final-failed" in nodes["state-declined"].get("class", "")
    assert "final-succeeded" in nodes["state-completed"].get("class", "")
    # Double border: two outlines for a final state.
    assert len(nodes["state-completed"].findall(".//{http://www.w3.org/2000/svg}polygon")) == 2
    validate = " ".join(texts(nodes["state-validate_payment"]))
    assert "payments.validate" in validate and "3 attempts" in validate and "30s" in validate
    assert "inventory.release" in " ".join(texts(nodes["state-reserve_stock"]))
    notify = " ".join(texts(nodes["state-notify"]))
    assert "context.recipients" in notify and "5 at a time" in notify
    clusters = groups(order, "cluster")
    assert "kind-parallel" in clusters["state-ship"].get("class", "")
    assert {"region-ship.pack", "region-ship.label"} <= set(clusters)
    assert "initial-root" in nodes


def test_long_guards_are_shortened_with_the_full_text_in_the_tooltip(
    example_svgs: dict[str, bytes],
) -> None:
    svg = example_svgs["document_approval"].decode()
    guard = "event.limit == None or event.limit &gt;= context.amount"
    assert f"finance_approve [{guard}]" in svg  # the tooltip
    shown = [t for t in texts(svg_tree(example_svgs["document_approval"])) if "finance_app" in t]
    assert any(t.endswith("…]") for t in shown)


def test_svg_renders_with_dot_hidden_from_path(no_dot: None, loan: Definition) -> None:
    svg = diagrams.render(loan, "svg")
    assert svg.startswith(b"<?xml") and b"</svg>" in svg
    assert "state-disburse" in groups(svg, "node")


def test_png_without_dot_says_which_package_to_install(no_dot: None, loan: Definition) -> None:
    with pytest.raises(diagrams.RenderError) as raised:
        diagrams.render(loan, "png")
    message = str(raised.value)
    assert "`dot`" in message and "apt-get install graphviz" in message
    assert "brew install graphviz" in message
    assert isinstance(raised.value, TurnoutError)
    with pytest.raises(diagrams.RenderError, match="PDF output needs"):
        diagrams.render(loan, "pdf")


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs the system Graphviz `dot`")
def test_png_and_pdf_come_from_the_system_dot(examples: dict[str, Definition]) -> None:
    definition = examples["order_fulfillment"]
    assert diagrams.render(definition, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert diagrams.render(definition, "pdf").startswith(b"%PDF")
    svg = diagrams.render(definition, "svg")
    assert "state-ship" in groups(svg, "cluster")


def test_dot_and_mermaid_are_text(examples: dict[str, Definition]) -> None:
    definition = examples["trip_booking"]
    assert diagrams.render(definition, "dot").decode().startswith("digraph trip_booking {")
    assert diagrams.render(definition, "mermaid").decode().startswith("stateDiagram-v2")


def test_unknown_format_or_direction_is_refused(examples: dict[str, Definition]) -> None:
    with pytest.raises(diagrams.RenderError, match="svg, png, pdf, dot, mermaid"):
        diagrams.render(examples["door_lock"], "gif")
    with pytest.raises(diagrams.RenderError, match="direction"):
        diagrams.render(examples["door_lock"], "dot", direction="diagonal")


def test_render_accepts_a_path_or_yaml_text(examples: dict[str, Definition]) -> None:
    definition = examples["door_lock"]
    from_path = diagrams.render(definition.file, "dot")
    from_text = diagrams.render(definition.source, "dot")
    assert from_path == from_text == diagrams.render(definition, "dot")


def test_nested_parallel_states_and_reentry_are_drawn_inside_their_boxes(no_dot: None) -> None:
    definition = statemachines.load(HERE / "nested_parallel.yaml")
    svg = diagrams.render(definition)
    drawn = groups(svg, "node") | groups(svg, "cluster")
    assert {f"state-{state.path}" for state in definition.walk()} <= set(drawn)
    outer = " ".join(texts(drawn["state-outer"]))
    assert "restart → outer (again)" in outer and "ping / set pinged" in outer
    assert "again → inner (again)" in " ".join(texts(drawn["state-outer.a.inner"]))
    overlay = diagrams.InstanceOverlay(
        ["outer", "outer.b.b", "outer.a.inner", "outer.a.inner.x.x", "outer.a.inner.y.y"],
        "running",
        [(None, None, "outer"), ("restart", "outer", "outer")],
    )
    again = groups(diagrams.render(definition, overlay=overlay), "cluster")["state-outer"]
    assert "(2) restart → outer (again)" in " ".join(texts(again))
    assert "active" in again.get("class", "").split()
