"""What the hook tests share: the definition they run and a recorder of every hook call."""

from __future__ import annotations

from engine import Engine, HookContext

DEFINITION = "hooked_order"


def recorded(engine: Engine, durable: bool = False) -> list[tuple[str, ...]]:
    """Register a hook of each kind for any state and transition of `hooked_order`;
    the list they append to: ("exit", state), ("transition", source, dest, event),
    ("enter", state)."""
    calls: list[tuple[str, ...]] = []

    @engine.on_exit(DEFINITION, durable=durable)
    def left(context: HookContext) -> None:
        calls.append(("exit", str(context.state)))

    @engine.on_transition(DEFINITION, durable=durable)
    def moved(context: HookContext) -> None:
        calls.append(("transition", str(context.source), str(context.dest), str(context.event)))

    @engine.on_enter(DEFINITION, durable=durable)
    def entered(context: HookContext) -> None:
        calls.append(("enter", str(context.state)))

    return calls
