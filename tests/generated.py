"""Definitions generated for tests that need them larger than a file beside the test."""

from __future__ import annotations


def tangled(states: int, name: str = "tangled") -> str:
    """YAML of `states` states, each with three events to states far apart (and a way out):
    small as text, and among the hardest shapes for a layout to route."""
    lines = [f"name: {name}", "initial: s0000", "states:"]
    for number in range(states):
        targets = [(number + 1) % states, (number * 7 + 3) % states, (number * 13 + 5) % states]
        events = ", ".join(f"e{k}: s{target:04d}" for k, target in enumerate(targets))
        lines.append(f"  s{number:04d}: {{on: {{{events}, quit: done}}}}")
    lines.append("  done: {final: succeeded}")
    return "\n".join(lines) + "\n"
