"""In-process hooks: called right after the commit, with the committed snapshot, in order
(states left, transitions, states entered), as their filters select."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_recording import DEFINITION, recorded

from engine import AsyncEngine, Engine, HookContext


@pytest.fixture
def order(engine: Engine, deploy: Callable[[str], Any]) -> Engine:
    """The engine with `hooked_order` deployed and its packing task done by a handler."""
    deploy(DEFINITION)
    deploy("counter")
    engine.task("warehouse.pack")(lambda data: None)
    return engine


@pytest.fixture
def reader(store_url: str, clock: Any) -> Iterator[Engine]:
    """Another engine on the same database: it sees only what has committed."""
    other = Engine(store_url, clock=clock)
    try:
        yield other
    finally:
        other.close()


def test_hooks_run_after_commit_and_see_the_committed_state(order: Engine, reader: Engine) -> None:
    seen: list[tuple[str, int, str, int]] = []

    @order.on_enter(DEFINITION, "paid")
    def paid(context: HookContext) -> None:
        stored = reader.get(context.instance.id)  # another connection: only what committed
        seen.append(
            (stored.state, stored.revision, context.instance.state, context.instance.revision)
        )

    inst = order.start(DEFINITION)
    moved = order.send(inst.id, "pay")
    assert seen == [("paid", moved.revision, "paid", moved.revision)]


def test_hooks_are_called_exits_then_transitions_then_entries(order: Engine) -> None:
    calls = recorded(order)
    inst = order.start(DEFINITION)
    assert calls == [("transition", "None", "cart", "None"), ("enter", "cart")]
    calls.clear()
    order.send(inst.id, "pay")
    assert calls == [
        ("exit", "cart"),
        ("transition", "cart", "paid", "pay"),
        ("enter", "paid"),
        ("enter", "paid.waiting"),
    ]


def test_a_self_transition_leaves_and_enters_again_and_an_internal_one_neither(
    order: Engine,
) -> None:
    calls = recorded(order)
    inst = order.start(DEFINITION)
    calls.clear()
    order.send(inst.id, "touch")
    assert calls == [("exit", "cart"), ("transition", "cart", "cart", "touch"), ("enter", "cart")]
    calls.clear()
    order.send(inst.id, "note")
    assert calls == [("transition", "cart", "cart", "note")]


def test_nested_and_parallel_states_are_entered_and_left_by_their_full_paths(
    order: Engine,
) -> None:
    calls = recorded(order)
    inst = order.start(DEFINITION)
    order.send(inst.id, "pay")
    order.send(inst.id, "pack")
    calls.clear()
    # The worker's answer commits the step: packed is entered and left within it (its
    # `done` moves the instance on), so only the transitions name it.
    assert order.run_until_idle() == 1
    assert calls == [
        ("exit", "paid.packing"),
        ("exit", "paid"),
        ("transition", "paid.packing", "paid.packed", "done"),
        ("transition", "paid", "shipping", "done"),
        ("enter", "shipping"),
        ("enter", "shipping.parcel.boxed"),
        ("enter", "shipping.invoice.open"),
    ]
    calls.clear()
    order.send(inst.id, "post")
    assert calls == [
        ("exit", "shipping.parcel.boxed"),
        ("transition", "shipping.parcel.boxed", "shipping.parcel.posted", "post"),
        ("enter", "shipping.parcel.posted"),
    ]
    calls.clear()
    done = order.send(inst.id, "settle")
    assert done.state == "delivered" and done.status == "succeeded"
    assert calls == [
        ("exit", "shipping.parcel.posted"),  # the last entered, the first left
        ("exit", "shipping.invoice.open"),
        ("exit", "shipping"),
        ("transition", "shipping.invoice.open", "shipping.invoice.settled", "settle"),
        ("transition", "shipping", "delivered", "done"),
        ("enter", "delivered"),
    ]


def test_filters_select_the_definition_state_source_dest_and_event(order: Engine) -> None:
    calls: list[str] = []
    order.on_enter(DEFINITION, "paid.waiting")(lambda c: calls.append(f"enter {c.state}"))
    order.on_exit(DEFINITION, "cart")(lambda c: calls.append(f"exit {c.state} on {c.event}"))
    order.on_transition(DEFINITION, source="cart")(lambda c: calls.append(f"from cart {c.event}"))
    order.on_transition(DEFINITION, dest="paid")(lambda c: calls.append("to paid"))
    order.on_transition(DEFINITION, event="note")(lambda c: calls.append("note"))
    order.on_transition(DEFINITION, source="cart", dest="paid", event="touch")(
        lambda c: calls.append("never: touch goes to cart")
    )
    order.on_enter("counter")(lambda c: calls.append("never: another definition"))
    inst = order.start(DEFINITION)
    order.send(inst.id, "note")
    order.send(inst.id, "touch")
    order.send(inst.id, "pay")
    assert calls == [
        "from cart note",
        "note",
        "exit cart on touch",
        "from cart touch",
        "exit cart on pay",
        "from cart pay",
        "to paid",
        "enter paid.waiting",
    ]


def test_a_hook_gets_the_steps_entries_and_its_change_id(order: Engine) -> None:
    contexts: list[HookContext] = []
    order.on_enter(DEFINITION, "paid")(contexts.append)
    inst = order.start(DEFINITION)
    moved = order.send(inst.id, "pay", {"by": "card"})
    [context] = contexts
    assert context.hook == "enter" and not context.durable and context.position is None
    assert context.instance == moved
    assert context.change_id == f"{inst.id}.{moved.revision}"
    assert [entry.seq for entry in context.entries] == [
        entry.seq for entry in order.history(inst.id)
    ][-1:]
    assert context.entries[0].data == {"by": "card"} and context.event == "pay"
    assert context.change_id == order.changes()[-1].id


def test_a_failing_hook_is_logged_and_fails_neither_send_nor_the_other_hooks(
    order: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @order.on_exit(DEFINITION, "cart")
    def broken(context: HookContext) -> None:
        raise RuntimeError("the mail server is down")

    order.on_enter(DEFINITION, "paid")(lambda c: calls.append("paid"))
    inst = order.start(DEFINITION)
    with caplog.at_level(logging.ERROR, logger="turnout.hooks"):
        moved = order.send(inst.id, "pay")
    assert moved.state == "paid" and order.get(inst.id).state == "paid"
    assert calls == ["paid"]
    [record] = [r for r in caplog.records if r.name == "turnout.hooks"]
    assert f"change {inst.id}.{moved.revision}" in record.getMessage()
    assert record.exc_info is not None and "mail server" in str(record.exc_info[1])


def test_in_process_hooks_see_the_steps_of_other_instances_in_the_same_transaction(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """A call state starts its child in the parent's transaction, and the child's end moves
    the parent in the child's: each step is seen, of whichever instance."""
    deploy("call_child")
    deploy("call_parent")
    engine.task("child.work")(lambda data: {"doubled": data["n"] * 2})
    calls: list[tuple[str, str]] = []
    engine.on_enter("call_child")(lambda c: calls.append(("child", str(c.state))))
    engine.on_enter("call_parent")(lambda c: calls.append(("parent", str(c.state))))
    parent = engine.start("call_parent", {"n": 2, "hold": False})
    assert calls == [("parent", "ask"), ("child", "work")]
    calls.clear()
    engine.run_until_idle()
    assert calls == [("child", "end"), ("parent", "answered")]
    assert engine.get(parent.id).state == "answered"


def test_durable_hooks_are_not_called_in_process(order: Engine) -> None:
    calls = recorded(order, durable=True)
    order.start(DEFINITION)
    assert calls == []


def test_a_hook_must_be_a_plain_function_of_a_named_definition(order: Engine) -> None:
    async def coroutine(context: HookContext) -> None:
        pass

    with pytest.raises(TypeError, match="plain function"):
        order.on_enter(DEFINITION)(coroutine)
    with pytest.raises(TypeError, match="definition"):
        order.on_enter("")
    with pytest.raises(TypeError, match="state"):
        order.on_exit(DEFINITION, 3)  # type: ignore[arg-type]


def test_async_engine_registers_the_same_hooks(store_url: str, clock: Any) -> None:
    definitions = Path(__file__).parent / "definitions"
    calls: list[str] = []

    async def scenario() -> None:
        async with AsyncEngine(store_url, clock) as aeng:
            await aeng.deploy(definitions / f"{DEFINITION}.yaml")
            aeng.on_enter(DEFINITION, "paid")(lambda c: calls.append(f"enter {c.state}"))
            aeng.on_exit(DEFINITION, "cart")(lambda c: calls.append(f"exit {c.state}"))
            aeng.on_transition(DEFINITION, event="pay")(lambda c: calls.append("pay"))
            inst = await aeng.start(DEFINITION)
            await aeng.send(inst.id, "pay")

    asyncio.run(scenario())
    assert calls == ["exit cart", "pay", "enter paid"]
