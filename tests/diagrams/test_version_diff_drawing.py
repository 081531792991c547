"""Two versions of a definition drawn as one picture: added states and transitions green and
bold, removed ones put back red and dashed, changed ones amber with their aspects named, a
legend, and the instances of the old version on their states.

Drawn with no system Graphviz on PATH (the in-process WebAssembly one), like the other SVGs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from diagram_svg import SVG, groups, svg_tree, texts
from generated import tangled

import diagrams
import statemachines
from diagrams import DIFF_STYLES
from statemachines import Definition
from statemachines.errors import RenderError

HERE = Path(__file__).parent
SHOP = HERE.parent / "statemachines" / "diffs"
ADDED, REMOVED, CHANGED = DIFF_STYLES["added"], DIFF_STYLES["removed"], DIFF_STYLES["changed"]
STRANDED = DIFF_STYLES["stranded"]
DIFF_COLOURS = {style.colour for style in DIFF_STYLES.values()} - {""}


def drawn(*args: Any, **kwargs: Any) -> bytes:
    """`diagrams.diff_diagram(...)` with no `dot` on PATH."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent-turnout-test-path")
        assert shutil.which("dot") is None
        return diagrams.diff_diagram(*args, **kwargs)


@pytest.fixture(scope="module")
def shop() -> tuple[Definition, Definition]:
    return statemachines.load(SHOP / "shop_v1.yaml"), statemachines.load(SHOP / "shop_v2.yaml")


@pytest.fixture(scope="module")
def shop_svg(shop: tuple[Definition, Definition]) -> bytes:
    return drawn(*shop, title="shop: version 1 → version 2")


@pytest.fixture(scope="module")
def counted_svg(shop: tuple[Definition, Definition]) -> bytes:
    return drawn(*shop, {"pay": 2, "shipping.labelled": 3, "shipping": 3})


def classes(element: ElementTree.Element) -> set[str]:
    return set(element.get("class", "").split())


def marked(svg: bytes, kind: str, css: str) -> dict[str, ElementTree.Element]:
    """The groups of `kind` (node, edge, cluster) whose classes include `css`, by id."""
    return {key: group for key, group in groups(svg, kind).items() if css in classes(group)}


def lines(element: ElementTree.Element) -> list[ElementTree.Element]:
    """The outlines of a state (its box, twice for a final state) or an edge's line."""
    return [shape for tag in ("path", "polygon") for shape in element.iter(f"{SVG}{tag}")]


def strokes(element: ElementTree.Element) -> set[str]:
    return {shape.get("stroke", "") for shape in lines(element)} - {"none", ""}


def dashed(element: ElementTree.Element) -> bool:
    return any(shape.get("stroke-dasharray") for shape in lines(element))


def widths(element: ElementTree.Element) -> set[str]:
    return {shape.get("stroke-width", "1") for shape in lines(element)}


def box(element: ElementTree.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the outline's points."""
    numbers = [
        float(number)
        for shape in lines(element)
        for number in re.findall(r"-?\d+(?:\.\d+)?", shape.get("d") or shape.get("points", ""))
    ]
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def test_added_states_and_transitions_are_green_and_bold(shop_svg: bytes) -> None:
    states = marked(shop_svg, "node", ADDED.css)
    assert set(states) == {"state-refund", "state-shipping.packed"}
    edges = marked(shop_svg, "edge", ADDED.css)
    assert set(edges) == {
        "transition-refund-done-0-broken",
        "transition-review-after-3d-0-broken",
        "transition-shipping.packed-done-0-shipping.sent",
    }
    for element in [*states.values(), *edges.values()]:
        assert strokes(element) == {ADDED.colour}
        assert widths(element) == {ADDED.width}
    assert "+ added" in texts(states["state-refund"])
    assert texts(edges["transition-refund-done-0-broken"]) == ["+ done"]
    assert not dashed(states["state-refund"])


def test_removed_state_and_transitions_are_put_back_red_and_dashed(shop_svg: bytes) -> None:
    states = marked(shop_svg, "node", REMOVED.css)
    assert set(states) == {"state-shipping.labelled"}
    labelled = states["state-shipping.labelled"]
    assert strokes(labelled) == {REMOVED.colour} and dashed(labelled)
    assert texts(labelled)[:3] == ["labelled", "shipping.label", "− removed"]
    edges = marked(shop_svg, "edge", REMOVED.css)
    assert set(edges) == {
        "transition-review-after-2d-0-broken",
        "transition-shipping.labelled-done-0-shipping.sent",
    }
    for edge in edges.values():
        assert strokes(edge) == {REMOVED.colour} and dashed(edge)
    assert texts(edges["transition-review-after-2d-0-broken"]) == ["− after 2d"]
    # Put back where it was: inside the box of its compound state.
    left, top, right, bottom = box(labelled)
    outer = box(groups(shop_svg, "cluster")["state-shipping"])
    assert outer[0] < left and outer[1] < top and right < outer[2] and bottom < outer[3]


def test_changed_states_and_transitions_are_amber_and_name_what_changed(shop_svg: bytes) -> None:
    states = marked(shop_svg, "node", CHANGED.css)
    assert set(states) == {"state-pay", "state-review", "state-deliver.notify.notify"}
    assert "~ changed: retry, timeout" in texts(states["state-pay"])
    assert "~ changed: timers" in texts(states["state-review"])
    assert "~ changed: task" in texts(states["state-deliver.notify.notify"])
    edges = marked(shop_svg, "edge", CHANGED.css)
    labels = {key: " ".join(texts(edge)) for key, edge in edges.items()}
    assert labels["transition-pay-failed-0-refund"] == "~ failed (target; was → broken)"
    assert labels["transition-shipping.packing-done-0-shipping.packed"].endswith(
        "(target; was → shipping.labelled)"
    )
    assert labels["transition-pay-done-0-shipping"].endswith("(guard)")
    assert labels["transition-deliver.track.waiting-arrived-0-deliver.track.arrived"] == (
        "~ arrived (assign)"
    )
    for element in [*states.values(), *edges.values()]:
        assert strokes(element) == {CHANGED.colour} and not dashed(element)


def test_unchanged_states_keep_their_usual_look(
    shop: tuple[Definition, Definition], shop_svg: bytes
) -> None:
    plain = groups(drawn_plain(shop[1]), "node")
    unchanged = marked(shop_svg, "node", "diff-unchanged")
    assert {"state-shipping.packing", "state-completed", "state-broken"} <= set(unchanged)
    for key, element in unchanged.items():
        assert strokes(element) == strokes(plain[key]), key
        assert not strokes(element) & DIFF_COLOURS - {"#1a7f37"}
    every = {key for key in groups(shop_svg, "node") if key.startswith("state-")}
    kinds = [marked(shop_svg, "node", style.css) for style in (ADDED, REMOVED, CHANGED)]
    assert every == set(unchanged).union(*kinds)  # each state has one kind


def drawn_plain(definition: Definition) -> bytes:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent-turnout-test-path")
        return diagrams.render(definition)


def test_legend_draws_each_style_and_names_it(shop_svg: bytes) -> None:
    assert "diff-legend" in groups(shop_svg, "cluster")
    nodes = groups(shop_svg, "node")
    for kind, style in DIFF_STYLES.items():
        sample = nodes[f"legend-{kind}"]
        assert style.meaning in " ".join(texts(sample))
        if style.colour:
            assert strokes(sample) == {style.colour}
        assert dashed(sample) == style.dashed
    assert "arrows: the same colours and marks" in texts(nodes["legend-transitions"])


def test_title_counts_the_changes(shop_svg: bytes) -> None:
    title = texts(svg_tree(shop_svg))[0]
    assert title == "shop: version 1 → version 2 · states +2 −1 ~3 · transitions +3 −2 ~4"


def test_instances_are_counted_and_a_removed_state_holding_some_stands_out(
    counted_svg: bytes, shop_svg: bytes
) -> None:
    nodes = groups(counted_svg, "node")
    assert "2 running" in texts(nodes["state-pay"])
    stranded = marked(counted_svg, "node", STRANDED.css)
    assert set(stranded) == {"state-shipping.labelled"}
    labelled = stranded["state-shipping.labelled"]
    assert {REMOVED.css, "has-instances"} <= classes(labelled)
    assert strokes(labelled) == {STRANDED.colour} and widths(labelled) == {STRANDED.width}
    assert "⚠ 3 running in a removed state" in texts(labelled)
    assert "3 running" in texts(groups(counted_svg, "cluster")["state-shipping"])
    assert not any("running" in text for text in texts(svg_tree(shop_svg)))


def test_two_equal_versions_mark_nothing(shop: tuple[Definition, Definition]) -> None:
    svg = drawn(shop[1], shop[1])
    for style in (ADDED, REMOVED, CHANGED, STRANDED):
        for kind in ("node", "edge", "cluster"):
            assert marked(svg, kind, style.css) == {}
    states = [key for key in groups(svg, "node") if key.startswith("state-")]
    assert states and set(states) == set(marked(svg, "node", "diff-unchanged"))


DESK_OLD, DESK_NEW = HERE / "desk_v1.yaml", HERE / "desk_v2.yaml"


def test_transitions_inside_a_state_and_branches_are_marked_too() -> None:
    svg = drawn(DESK_OLD, DESK_NEW)
    assert texts(groups(svg, "node")["state-open"]) == [
        "open",
        "+ ping / set pinged",
        "− note / set noted",
    ]
    audit = groups(svg, "cluster")["region-working.audit"]
    assert REMOVED.css in classes(audit) and dashed(audit)
    assert "~ changed: regions" in texts(groups(svg, "cluster")["state-working"])
    reversed_svg = drawn(DESK_NEW, DESK_OLD)
    audit = groups(reversed_svg, "cluster")["region-working.audit"]
    assert ADDED.css in classes(audit) and not dashed(audit)  # a branch's usual dashes go


@pytest.mark.parametrize("pair", [(DESK_OLD, DESK_NEW), (DESK_NEW, DESK_OLD)])
def test_every_edge_joins_nodes_the_drawing_declares(pair: tuple[Path, Path]) -> None:
    """A state that is a box in one version and plain in the other: the old edges go to
    what stands for it, never to a stray node Graphviz would make up."""
    dot = drawn(*pair, format="dot").decode()
    declared = set(re.findall(r'^\s*"?([^"\s>-][^"\s]*)"? \[', dot, re.M))
    ends = re.findall(r'^\s*"?([^"\s]+)"? -> "?([^"\s]+)"? \[', dot, re.M)
    assert ends and {end for pair in ends for end in pair} <= declared
    clipped = set(re.findall(r"l(?:head|tail)=\"?(cluster_[^\"\s\]]+)", dot))
    assert clipped <= set(re.findall(r"subgraph \"?(cluster_[^\"\s{]+)", dot))


def test_formats_and_directions_are_checked(shop: tuple[Definition, Definition]) -> None:
    with pytest.raises(RenderError, match="svg, png, pdf, dot"):
        diagrams.diff_diagram(*shop, format="mermaid")
    with pytest.raises(RenderError, match="direction"):
        diagrams.diff_diagram(*shop, direction="up")
    assert drawn(*shop, direction="TB").startswith(b"<?xml")


def test_a_drawing_too_large_falls_back_to_a_picture_that_says_so() -> None:
    big = statemachines.load(tangled(1000, "thousand"))
    with pytest.raises(diagrams.DiagramTooLarge):
        drawn(big, big)
    assert b"not-laid-out" in drawn(big, big, fallback=True)
