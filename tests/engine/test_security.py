"""What hostile data cannot do: reach code through a task name, or SQL through a value."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from engine import Engine

INJECTION = "x'); DROP TABLE turnout_instances; --"


def test_a_task_name_reaches_only_a_registered_handler_never_an_import(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("hostile_task")
    imported = set(sys.modules)
    inst = engine.start("hostile_task", {"command": "touch /tmp/owned"})
    assert engine.run_until_idle() == 0  # nobody registered "os.system": the task waits
    assert engine.get(inst.id).state == "run"
    assert {m for m in set(sys.modules) - imported if not m.startswith("engine.")} == set()
    calls: list[Any] = []
    engine.task("os.system")(lambda data: calls.append(data) or {"ran": True})
    assert engine.run_until_idle() == 1
    assert calls == [{"command": "touch /tmp/owned"}]  # the application's own handler ran
    assert engine.get(inst.id).state == "finished"


def test_values_that_look_like_sql_are_stored_and_matched_as_plain_data(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0, "note": INJECTION}, key=INJECTION)
    engine.send(inst.id, "increment", idempotency_key=INJECTION)
    engine.send(inst.id, "increment", idempotency_key=INJECTION)
    assert engine.get_by_key("counter", INJECTION).context == {"count": 1, "note": INJECTION}
    assert engine.instances(state="' OR '1'='1") == []
    assert engine.instances(definition="counter' OR '1'='1") == []
    assert [i.id for i in engine.instances(definition="counter")] == [inst.id]
