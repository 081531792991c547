"""Mermaid `stateDiagram-v2` text: every state and transition of every example is in it."""

from __future__ import annotations

import re

import diagrams
from statemachines import Definition
from statemachines.chart import Chart


def aliases(text: str) -> dict[str, str]:
    """Mermaid id by state name as declared with `state "name" as id`, per declaration order."""
    return dict(re.findall(r'^\s*state "([^"]+)" as (\S+)$', text, flags=re.MULTILINE))


def mermaid_id(text: str, path: str) -> str:
    """The id a state path is written with: its name, or the alias declared for the path."""
    flat = re.sub(r"[^A-Za-z0-9_]", "_", path.replace(".", "__"))
    declared = set(re.findall(r'^\s*state "[^"]+" as (\S+)$', text, flags=re.MULTILINE))
    return flat if flat in declared or "." in path else path


def test_every_state_and_transition_of_each_example_is_in_the_mermaid_text_targets_by_chart(
    examples: dict[str, Definition],
) -> None:
    for name, definition in examples.items():
        chart = Chart(definition)
        text = diagrams.to_mermaid(definition)
        assert text.startswith("stateDiagram-v2\n")
        lines = {line.strip() for line in text.splitlines()}
        for state in definition.walk():
            sid = mermaid_id(text, state.path)
            assert re.search(rf"\b{re.escape(sid)}\b", text), f"{name}: {state.path} missing"
            label = {"shallow": "H", "deep": "H*"}.get(state.history or "", state.name)
            if sid != label:
                assert f'state "{label}" as {sid}' in lines
            for trigger, transition in state.all_transitions():
                target = chart.target(state.path, transition) or state.path
                arrow = f"{sid} --> {mermaid_id(text, target)}"
                matching = [line for line in lines if line.startswith(arrow)]
                assert matching, f"{name}: no transition {arrow}"
                if trigger in ("done", "failed") or not trigger.startswith(("after:", "always")):
                    assert any(trigger in line for line in matching), f"{name}: {arrow} {trigger}"
                elif trigger.startswith("after:"):
                    assert any(f"after {trigger[6:]}" in line for line in matching)


def test_choice_parallel_and_final_states_use_mermaid_notation(
    examples: dict[str, Definition],
) -> None:
    text = diagrams.to_mermaid(examples["order_fulfillment"])
    lines = [line.strip() for line in text.splitlines()]
    assert "state route <<choice>>" in lines
    assert "state ship {" in lines
    assert "--" in lines  # the separator between the two branches
    assert "completed --> [*]" in lines and "declined --> [*]" in lines
    classes = {
        line.rsplit(" ", 1)[1]: line.split(" ")[1].split(",")
        for line in lines
        if line.startswith("class ")
    }
    assert {"completed"} <= set(classes["succeeded"])
    assert {"declined", "cancelled_order"} <= set(classes["failed"])
    assert "[*] --> validate_payment" in lines
    assert "validate_payment : payments.validate, 3 attempts, timeout 30s" in lines
    assert "reserve_stock : undo inventory.release" in lines


def test_states_with_the_same_name_in_two_branches_stay_apart(
    examples: dict[str, Definition],
) -> None:
    text = diagrams.to_mermaid(examples["document_approval"])
    assert 'state "waiting" as review__legal__waiting' in text
    assert 'state "waiting" as review__finance__waiting' in text
    assert "review__finance__waiting --> review__finance__approved" in text


def test_mermaid_overlay_marks_the_current_state_and_numbers_the_path(
    examples: dict[str, Definition],
) -> None:
    overlay = diagrams.InstanceOverlay(
        ["manual_review"],
        "running",
        [(None, None, "validate_payment"), ("done", "validate_payment", "manual_review")],
    )
    text = diagrams.to_mermaid(examples["order_fulfillment"], overlay=overlay)
    assert "class manual_review active" in text
    assert "class validate_payment visited" in text
    assert "validate_payment --> manual_review : (2) done [else]" in text
