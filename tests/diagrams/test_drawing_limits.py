"""Layout is bounded: a drawing over the limit is not laid out, Graphviz is stopped at its time
and memory bounds, and a picture asked for again is not laid out again."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import pytest
from generated import tangled
from typer.testing import CliRunner

import diagrams
import statemachines
from diagrams import layout
from engine.cli import app
from statemachines import Definition

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def thousand() -> Definition:
    """1,000 states with three events each to states far apart: minutes of layout for dot."""
    return statemachines.load(tangled(1000, "thousand"))


@pytest.fixture(scope="module")
def hundred_source() -> str:
    """The DOT text of 100 tangled states: under the limit, yet tens of seconds of layout."""
    return diagrams.render(statemachines.load(tangled(100, "hundred")), "dot").decode()


def test_a_definition_over_the_drawing_limit_is_refused_without_layout(
    thousand: Definition,
) -> None:
    before = diagrams.cache_info().misses
    with pytest.raises(diagrams.DiagramTooLarge) as raised:
        diagrams.render(thousand)
    assert (raised.value.states, raised.value.transitions) == (1001, 4000)
    assert raised.value.limit == diagrams.MAX_LAID_OUT == 1500
    assert "1,500" in str(raised.value) and "mermaid" in str(raised.value)
    assert diagrams.cache_info().misses == before


def test_over_the_limit_the_svg_fallback_says_why_and_lists_the_busiest_states(
    thousand: Definition,
) -> None:
    before = diagrams.cache_info().misses
    heat = diagrams.HeatOverlay(counts={"s0007": 3, "s0500": 12}, ended={"s1000": 40})
    svg = diagrams.render(thousand, overlay=heat, fallback=True).decode()
    assert "55 instances (15 running, 40 finished)" in svg
    assert "1,001 states and 4,000 transitions" in svg and "1,500" in svg
    assert "turnout diagram thousand --format mermaid" in svg
    assert svg.index("s0500: 12") < svg.index("s0007: 3")
    assert 'id="definition-thousand"' in svg
    assert diagrams.cache_info().misses == before


def test_over_the_limit_dot_and_mermaid_text_are_still_given(thousand: Definition) -> None:
    assert "s0999 -> s0000" in diagrams.render(thousand, "dot").decode()
    assert "s0999 --> s0000 : e0" in diagrams.render(thousand, "mermaid").decode()
    with pytest.raises(diagrams.DiagramTooLarge):
        diagrams.render(thousand, "png", fallback=True)


def test_a_heat_diagram_with_the_same_counts_is_laid_out_once(loan: Definition) -> None:
    heat = diagrams.HeatOverlay(counts={"check_identity": 41, "identity_review": 17})
    before = diagrams.cache_info()
    first = diagrams.render(loan, overlay=heat)
    again = diagrams.render(loan, overlay=diagrams.HeatOverlay(counts=dict(heat.counts)))
    after = diagrams.cache_info()
    assert again == first
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    diagrams.render(loan, overlay=diagrams.HeatOverlay(counts={"check_identity": 42}))
    assert diagrams.cache_info().misses == after.misses + 1


def test_a_picture_asked_for_while_it_is_laid_out_is_laid_out_once(loan: Definition) -> None:
    heat = diagrams.HeatOverlay(counts={"manual_scoring": 23})
    before = diagrams.cache_info().misses
    outputs: list[bytes] = []
    callers = [
        threading.Thread(target=lambda: outputs.append(diagrams.render(loan, overlay=heat)))
        for _ in range(3)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(outputs) == 3 and len(set(outputs)) == 1
    assert diagrams.cache_info().misses == before + 1


def test_a_two_hundred_state_definition_is_under_the_limit_and_drawn() -> None:
    definition = statemachines.load(HERE / "two_hundred_states.yaml")
    svg = diagrams.render(definition, fallback=True)
    assert b"not-laid-out" not in svg and b"stage20_notify" in svg


def test_dot_is_stopped_at_its_time_bound(hundred_source: str) -> None:
    program = diagrams.dot_program()
    if program is None:
        pytest.skip("Graphviz `dot` is not installed")
    with pytest.raises(layout.LayoutOverrun, match="stopped after 1 s"):
        layout.run_dot(program, hundred_source, "svg", seconds=1.0)


def test_dot_is_stopped_at_its_memory_bound(hundred_source: str) -> None:
    program = diagrams.dot_program()
    if program is None:
        pytest.skip("Graphviz `dot` is not installed")
    with pytest.raises(layout.LayoutOverrun, match="ran out of the 8 MiB"):
        layout.run_dot(program, hundred_source, "svg", memory=8 << 20)


def test_webassembly_graphviz_is_stopped_at_its_time_bound_and_draws_again(
    hundred_source: str, loan: Definition
) -> None:
    plain = hundred_source.replace("label=<<B>hundred</B>>", "label=hundred")
    with pytest.raises(layout.LayoutOverrun, match="stopped after 1 s"):
        layout.run_wasm(plain, seconds=1.0)
    assert b"</svg>" in layout.run_wasm("digraph { a -> b }")


def test_a_layout_stopped_at_its_bound_is_refused_at_once_the_next_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    definition = statemachines.load(tangled(100, "stopped_once"))
    monkeypatch.setattr(layout, "LAYOUT_SECONDS", 1.0)
    with pytest.raises(diagrams.DiagramTooLarge, match="stopped after 1 s"):
        diagrams.render(definition)
    before = diagrams.cache_info()
    with pytest.raises(diagrams.DiagramTooLarge, match="stopped after 1 s"):
        diagrams.render(definition)
    svg = diagrams.render(definition, fallback=True).decode()
    assert "stopped after 1 s" in svg
    after = diagrams.cache_info()
    assert (after.misses, after.hits) == (before.misses, before.hits + 2)


def test_the_cli_says_a_definition_is_over_the_drawing_limit_and_still_gives_its_text(
    tmp_path: Path,
) -> None:
    source = tmp_path / "thousand.yaml"
    source.write_text(tangled(1000, "thousand"))
    out = tmp_path / "thousand.svg"
    refused = CliRunner().invoke(app, ["diagram", str(source), "-o", str(out)])
    assert refused.exit_code == 1 and not out.exists()
    assert "not drawn" in refused.stderr and "1,500" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    text = CliRunner().invoke(app, ["diagram", str(source), "--format", "mermaid"])
    assert text.exit_code == 0 and text.stdout.startswith("stateDiagram-v2")


def test_a_layout_stopped_at_its_bound_is_tried_again_once_its_refusal_has_lapsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    definition = statemachines.load(tangled(100, "lapsed"))
    monkeypatch.setattr(layout, "LAYOUT_SECONDS", 1.0)
    monkeypatch.setattr(importlib.import_module("diagrams.render"), "OVERRUN_KEPT", 0.0)
    before = diagrams.cache_info().misses
    for _ in range(2):
        with pytest.raises(diagrams.DiagramTooLarge, match="stopped after 1 s"):
            diagrams.render(definition)
    assert diagrams.cache_info().misses == before + 2
