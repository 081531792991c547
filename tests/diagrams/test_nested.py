"""Nested charts drawn: compound states are boxes holding their children (inside and around
parallel states), history states are H and H* circles, transitions land on the node their
target names, overlays light up the boxes around an active state, and a depth collapses what
lies deeper into one box per state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from diagram_svg import groups, svg_tree, texts
from typer.testing import CliRunner

import diagrams
import statemachines
from diagrams.graph import build_drawing
from engine.cli import app
from statemachines import Definition
from statemachines.errors import RenderError

NESTED = """\
name: nested_drawing
initial: shopping
states:
  shopping:
    initial: browsing
    on: {cancel: cancelled, done: shipping}
    states:
      browsing: {on: {add: cart}}
      cart: {on: {checkout: paying, pause: paused, cancel: cancelled}}
      paying:
        task: payments.charge
        on: {done: paid, failed: cart}
      paid: {final: true}
      resume: {history: shallow, default: cart}
  paused: {on: {resume: shopping.resume, restart: shopping}}
  shipping:
    parallel:
      work:
        initial: packing
        states:
          packing:
            initial: wrap
            states:
              wrap: {on: {wrapped: boxed, broke: lost}}
              boxed: {final: true}
              again: {history: deep}
            on: {done: packed}
          packed: {final: true}
      watch:
        initial: watching
        on: {lost: lost}
        states:
          watching: {on: {all_clear: quiet}}
          quiet: {final: true}
    on: {done: delivered, rewrap: shipping.work.packing.again}
  lost: {final: failed}
  delivered: {final: true}
  cancelled: {final: failed}
"""


@pytest.fixture(scope="module")
def nested() -> Definition:
    return statemachines.load(NESTED)


@pytest.fixture(scope="module")
def svg(nested: Definition) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent-turnout-test-path")
        return diagrams.render(nested)


def dot_text(definition: Definition, **options: object) -> str:
    return diagrams.render(definition, "dot", **options).decode()  # type: ignore[arg-type]


def clusters_of(dot: str) -> dict[str, list[str]]:
    """By cluster, the nodes declared directly or deeper inside it (DOT nesting by braces)."""
    found: dict[str, list[str]] = {}
    open_clusters: list[str] = []
    for line in dot.splitlines():
        opened = re.match(r'\s*subgraph "?(cluster_[^" ]+)"? \{', line)
        if opened:
            open_clusters.append(opened.group(1))
            found[opened.group(1)] = []
        elif line.strip() == "}":
            if open_clusters:
                open_clusters.pop()
        else:
            node = re.match(r'\s*"?([^"\s\[]+)"? \[', line)
            if node and "->" not in line:
                for cluster in open_clusters:
                    found[cluster].append(node.group(1))
    return found


def edge_classes(svg_bytes: bytes) -> list[set[str]]:
    return [set(group.get("class", "").split()) for group in groups(svg_bytes, "edge").values()]


def test_a_compound_state_is_a_box_holding_its_children_at_any_depth(svg: bytes) -> None:
    boxes = groups(svg, "cluster")
    assert "kind-compound" in boxes["state-shopping"].get("class", "")
    assert "kind-compound" in boxes["state-shipping.work.packing"].get("class", "")
    assert "kind-parallel" in boxes["state-shipping"].get("class", "")
    nodes = groups(svg, "node")
    for path in ("shopping.browsing", "shopping.paid", "shipping.work.packing.wrap"):
        assert f"state-{path}" in nodes
    inside = clusters_of(diagrams.render(statemachines.load(NESTED), "dot").decode())
    assert {"shopping.browsing", "shopping.cart", "shopping.paying", "shopping.resume"} <= set(
        inside["cluster_shopping"]
    )
    # A compound state inside a parallel branch inside the parallel state.
    assert {"shipping.work.packing.wrap", "shipping.work.packing.boxed"} <= set(
        inside["cluster_shipping.work.packing"]
    )
    assert "shipping.work.packing.wrap" in inside["cluster_shipping.work"]
    assert "shipping.work.packing.wrap" in inside["cluster_shipping"]
    assert "shipping.work.packing.wrap" not in inside["cluster_shopping"]
    assert "paused" not in inside["cluster_shopping"]


def test_a_compound_state_marks_its_initial_child_with_a_start_dot(svg: bytes) -> None:
    nodes = groups(svg, "node")
    assert "initial-shopping" in nodes and "initial-shipping.work.packing" in nodes
    starts = [classes for classes in edge_classes(svg) if "trigger-initial" in classes]
    targets = {name for classes in starts for name in classes if name.startswith("to-")}
    assert {"to-shopping", "to-shopping.browsing", "to-shipping.work.packing.wrap"} <= targets


def test_history_states_are_h_and_h_star_circles_with_a_dashed_edge_to_their_default(
    nested: Definition, svg: bytes
) -> None:
    nodes = groups(svg, "node")
    shallow, deep = nodes["state-shopping.resume"], nodes["state-shipping.work.packing.again"]
    assert texts(shallow) == ["H"] and "history-shallow" in shallow.get("class", "")
    assert texts(deep) == ["H*"] and "history-deep" in deep.get("class", "")
    assert shallow.find(".//{http://www.w3.org/2000/svg}ellipse") is not None
    drawing = build_drawing(nested)
    defaults = [edge for edge in drawing.edges if edge.trigger == "default"]
    assert [(edge.tail, edge.head) for edge in defaults] == [("shopping.resume", "shopping.cart")]
    assert defaults[0].attrs["style"] == "dashed"


def test_transitions_land_on_the_node_their_target_names(nested: Definition, svg: bytes) -> None:
    drawing = build_drawing(nested)
    ends = {(edge.source, edge.trigger): edge for edge in drawing.edges if edge.trigger}
    # A bare name resolved outward, a full dotted name, and a deep target inside a parallel.
    assert ends[("shopping.cart", "pause")].head == "paused"
    assert ends[("paused", "resume")].head == "shopping.resume"
    assert ends[("shipping.work.packing.wrap", "broke")].head == "lost"
    assert ends[("shipping", "rewrap")].head == "shipping.work.packing.again"
    # Into and out of boxes: at the box's edge.
    restart = ends[("paused", "restart")]
    assert restart.attrs["lhead"] == "cluster_shopping" and restart.target == "shopping"
    done = ends[("shopping", "done")]
    assert done.attrs["ltail"] == "cluster_shopping" and done.attrs["lhead"] == "cluster_shipping"
    # A branch's own event leaves from the branch's box.
    lost = ends[("shipping.watch", "lost")]
    assert lost.attrs["ltail"] == "cluster_shipping.watch" and lost.head == "lost"
    classes = edge_classes(svg)
    assert {"event-pause", "from-shopping.cart", "to-paused"} in [
        classes_of & {"event-pause", "from-shopping.cart", "to-paused"} for classes_of in classes
    ]


def test_an_instance_overlay_marks_the_boxes_around_its_active_state(
    nested: Definition,
) -> None:
    run = statemachines.simulate(nested, ["add"])
    assert run.active == ["shopping.cart"]
    here = diagrams.InstanceOverlay(active=run.active, status=run.status, path=run.path)
    svg = diagrams.render(nested, "dot", overlay=here).decode()
    active = set(re.findall(r'class="([^"]*) active"', svg))
    assert any("state-shopping.cart" in found for found in active)
    assert any("kind-compound state-shopping" in found for found in active)
    assert not any("state-shipping" in found for found in active)
    # The step taken inside the compound state is numbered.
    assert "(2) add" in svg


def test_a_deep_instance_lights_up_every_box_around_it(nested: Definition) -> None:
    here = diagrams.InstanceOverlay(
        active=["shipping.work.packing.wrap", "shipping.watch.watching"],
        path=[(None, None, "shopping"), ("done", "shopping", "shipping")],
    )
    svg = diagrams.render(nested, "dot", overlay=here).decode()
    active = " ".join(re.findall(r'class="([^"]*) active"', svg))
    for path in ("shipping", "shipping.work.packing", "shipping.work.packing.wrap"):
        assert f"state-{path}" in active.split()
    assert "(2) done" in svg


def test_depth_collapses_what_lies_deeper_into_one_box(nested: Definition) -> None:
    top = build_drawing(nested, depth=0)
    assert top.clusters == {}
    collapsed = {path for path, node in top.nodes.items() if "collapsed" in node.attrs["class"]}
    assert collapsed == {"shopping", "shipping"}
    assert not any(path.startswith("shopping.") for path in top.nodes)
    pairs = [(edge.source, edge.trigger, edge.target) for edge in top.edges if edge.trigger]
    # The two cancels (of shopping and of its cart) are one edge; `broke` leaves the box.
    assert pairs.count(("shopping", "cancel", "cancelled")) == 1
    assert ("shopping", "pause", "paused") in pairs
    assert ("shipping", "broke", "lost") in pairs and ("shipping", "lost", "lost") in pairs
    assert ("paused", "resume", "shopping") in pairs
    one = build_drawing(nested, depth=1)
    assert set(one.clusters) == {"shopping", "shipping"}
    assert "collapsed" in one.nodes["shipping.work.packing"].attrs["class"]
    assert ("shipping.work.packing", "broke", "lost") in [
        (edge.source, edge.trigger, edge.target) for edge in one.edges
    ]
    # Deep enough for every level: the same drawing as without a depth.
    assert dot_text(nested, depth=5) == dot_text(nested)


def test_an_overlay_over_a_collapsed_drawing_marks_the_box(nested: Definition) -> None:
    run = statemachines.simulate(nested, ["add", "pause"])
    here = diagrams.InstanceOverlay(active=run.active, status=run.status, path=run.path)
    dot = dot_text(nested, overlay=here, depth=0)
    assert re.search(r'class="state kind-compound collapsed state-shopping visited"', dot)
    assert "(3) pause" in dot  # from the box: cart is inside it
    heat = diagrams.HeatOverlay(counts={"shopping.cart": 2, "shopping.paying": 3})
    assert "5 instances here" in dot_text(nested, overlay=heat, depth=0)


def test_a_collapsed_drawing_renders_as_svg_without_dot(nested: Definition, no_dot: None) -> None:
    svg = diagrams.render(nested, depth=0)
    nodes = groups(svg, "node")
    assert "collapsed" in nodes["state-shopping"].get("class", "")
    assert "state-shopping.cart" not in nodes
    assert "4 states inside" in " ".join(texts(svg_tree(svg)))


@pytest.mark.parametrize("depth", [-1, 1.5, "2", True])
def test_a_depth_that_is_no_level_is_refused(nested: Definition, depth: object) -> None:
    with pytest.raises(RenderError, match="depth"):
        diagrams.render(nested, "dot", depth=depth)  # type: ignore[arg-type]


def test_mermaid_draws_compound_states_as_composite_states(nested: Definition) -> None:
    text = diagrams.to_mermaid(nested)
    lines = [line.strip() for line in text.splitlines()]
    opened = lines.index("state shopping {")
    closed = lines.index("}", opened)
    inside = lines[opened:closed]
    assert "[*] --> shopping__browsing" in inside
    assert 'state "H" as shopping__resume' in inside
    assert "shopping__resume --> shopping__cart : default" in inside
    assert 'state "H*" as shipping__work__packing__again' in lines
    assert "state shipping__work__packing {" in lines
    # A transition is written where both its ends are: outside the composite state.
    assert "shopping__cart --> paused : pause" in lines[closed:]
    assert "paused --> shopping__resume : resume" in lines
    assert "shipping --> lost : lost" in lines  # a branch's own event, from its parallel state
    top = [line.strip() for line in diagrams.to_mermaid(nested, depth=0).splitlines()]
    assert "state shopping {" not in top and "shopping : 4 states inside" in top
    assert top.count("shopping --> cancelled : cancel") == 1


def four_deep(width: int) -> str:
    """Compound states four deep, `width` children at each level, each level ending in a
    final state; the innermost steps cancel to a top-level state by its bare name."""

    def level(depth: int, indent: str) -> list[str]:
        lines = []
        for number in range(1, width + 1):
            name = f"n{depth}_{number}"
            after = f"n{depth}_{number + 1}" if number < width else "end"
            if depth == 4:
                lines.append(f"{indent}{name}: {{on: {{next: {after}, cancel: cancelled}}}}")
                continue
            lines += [f"{indent}{name}:", f"{indent}  initial: n{depth + 1}_1"]
            lines += [f"{indent}  on: {{done: {after}}}", f"{indent}  states:"]
            lines += level(depth + 1, indent + "    ")
        return [*lines, f"{indent}end: {{final: true}}"]

    body = "\n".join(level(1, "  "))
    return f"name: four_deep\ninitial: n1_1\nstates:\n{body}\n  cancelled: {{final: failed}}\n"


def test_a_chart_nested_four_deep_draws_every_state_in_its_boxes(no_dot: None) -> None:
    definition = statemachines.load(four_deep(3))
    svg = diagrams.render(definition)
    drawn = groups(svg, "node") | groups(svg, "cluster")
    for state in definition.walk():
        assert f"state-{state.path}" in drawn, state.path
    inside = clusters_of(dot_text(definition))
    assert "n1_2.n2_3.n3_1.n4_2" in inside["cluster_n1_2.n2_3.n3_1"]
    assert "n1_2.n2_3.n3_1.n4_2" in inside["cluster_n1_2"]


def test_turnout_draw_takes_a_depth_and_refuses_a_bad_one(tmp_path: Path) -> None:
    source = tmp_path / "nested.yaml"
    source.write_text(NESTED)
    drawn = CliRunner().invoke(app, ["diagram", str(source), "--format", "dot", "--depth", "0"])
    assert drawn.exit_code == 0, drawn.stderr
    assert "cluster_" not in drawn.stdout and "collapsed state-shopping" in drawn.stdout
    full = CliRunner().invoke(app, ["diagram", str(source), "--format", "dot"])
    assert "cluster_shopping" in full.stdout
    refused = CliRunner().invoke(app, ["diagram", str(source), "--depth", "-1"])
    assert refused.exit_code == 2 and "--depth -1" in refused.stderr
