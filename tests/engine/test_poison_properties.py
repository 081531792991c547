"""Poison everywhere at once: generated definitions with odd expressions in guards, `assign`,
task `input` and timers, odd payloads and handler outcomes, run by two `turnout worker`
processes and driven through the HTTP API on one database.

Whatever goes in, no worker exits or leaves an unexpected traceback, every instance ends in a
documented state with its history intact, and no HTTP request answers 500. Each example
deploys its own definition; the workers and the app serve the whole module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from databases import postgres_schema
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, event, example, given, note, settings
from poison_inputs import INSTANCES, Action, Payload, definitions
from waiting import until

from engine import Engine, TurnoutError
from engine.api.app import create_app
from engine.tables import instances_t, tasks_t, timers_t

TASK_MODULES = Path(__file__).parent / "task_modules"
ROOT = Path(__file__).parents[2]

DOCUMENTED = {"running", "succeeded", "failed", "cancelled"}
# Ends of a traceback the workers may log on purpose: a handler's own exception.
EXPECTED_TRACEBACKS = ("PoisonHandlerError",)
SETTLE_SECONDS = 25.0
LEAVE_FIRST_SECONDS = 5.0
WORKER_START_SECONDS = 30.0
# Each example takes seconds of real time, and shrinking one that fails can take minutes, so
# `make test` reports the failing example as drawn (its message holds all of it);
# TURNOUT_POISON_SHRINK=1 shrinks it, TURNOUT_POISON_EXAMPLES draws more.
POISON = settings(
    max_examples=int(os.environ.get("TURNOUT_POISON_EXAMPLES", "15")),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([Phase.shrink] if os.environ.get("TURNOUT_POISON_SHRINK") == "1" else []),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the processes and the app -------------------------------------------------------------------
@dataclass
class Workers:
    """Two `turnout worker` processes on one database, their stderr in files."""

    url: str
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    read: list[int] = field(default_factory=list)

    def start(self, index: int) -> None:
        command = Path(sys.executable).with_name("turnout")
        log = self.workdir / f"worker-{index}-{uuid.uuid4().hex[:6]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        # The engine of this tree, whichever tree the installed command was installed from.
        env |= {
            "TURNOUT_DB": self.url,
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "PYTHONPATH": str(ROOT),
        }
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(command), "worker", "--tasks", "poison_handlers", "--concurrency", "4"],
                cwd=TASK_MODULES,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        if index < len(self.processes):
            self.processes[index], self.logs[index], self.read[index] = process, log, 0
        else:
            self.processes.append(process)
            self.logs.append(log)
            self.read.append(0)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while "task handler(s)" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {index} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)

    def revive(self) -> None:
        """Start again any worker an earlier example killed (that example reported it)."""
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                self.start(index)

    def problems(self) -> list[str]:
        """Workers that exited, and tracebacks they wrote since the last look that are not a
        handler's own exception."""
        found = []
        for index, (process, log) in enumerate(zip(self.processes, self.logs, strict=True)):
            text = log.read_text(errors="replace")
            new, self.read[index] = text[self.read[index] :], len(text)
            for block in tracebacks(new):
                if not any(name in block.rstrip().splitlines()[-1] for name in EXPECTED_TRACEBACKS):
                    found.append(f"worker {index} wrote a traceback:\n{block[-3000:]}")
            if process.poll() is not None:
                found.append(
                    f"worker {index} exited with {process.returncode}; its output "
                    f"ends:\n{text[-3000:]}"
                )
        return found

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def tracebacks(text: str) -> list[str]:
    """Each `Traceback ...` block of `text` up to its exception line, and any thread's
    unhandled-exception report."""
    pattern = (
        r"(Exception in thread[^\n]*\n)?Traceback \(most recent call last\):"
        r"\n(?:[ \t].*\n|\n)*[^\n]*"
    )
    return [match.group(0) for match in re.finditer(pattern, text)]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def poison_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database for the module: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('poison')}/turnout.db"
        return
    with postgres_schema() as url:
        yield url


@dataclass
class Rig:
    """What every example works with: the workers, the app's client, a Python engine and a
    plain connection to look at tasks and timers."""

    workers: Workers
    client: TestClient
    engine: Engine
    tables: sa.Engine


@pytest.fixture(scope="module")
def rig(poison_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    engine = Engine(poison_url)
    engine.definitions()  # creates the tables before the workers race to
    workers = Workers(poison_url, tmp_path_factory.mktemp("workers"))
    tables = sa.create_engine(poison_url)
    try:
        for index in range(2):
            workers.start(index)
        with TestClient(create_app(engine), base_url="http://127.0.0.1") as client:
            yield Rig(workers, client, engine, tables)
    finally:
        workers.stop()
        tables.dispose()
        engine.close()


# -- one example ---------------------------------------------------------------------------------
class Example:
    """One generated example at work: its calls, checked as they go, and what went wrong."""

    def __init__(self, rig: Rig, name: str) -> None:
        self.rig = rig
        self.name = name
        self.problems: list[str] = []

    def http(self, method: str, path: str, **options: Any) -> Any:
        """A request through the app; an unhandled exception or a 5xx is a problem."""
        try:
            answer = self.rig.client.request(method, path, **options)
        except Exception as exc:
            self.problems.append(f"{method} {path} raised {describe(exc)}")
            return None
        if answer.status_code >= 500:
            self.problems.append(
                f"{method} {path} answered {answer.status_code}: {answer.text[:300]}"
            )
        return answer

    def python(self, what: str, call: Callable[[], Any]) -> Any:
        """A call of the Python API; anything but a named turnout error is a problem."""
        try:
            return call()
        except TurnoutError:
            return None
        except Exception as exc:
            self.problems.append(f"{what} raised {describe(exc)}")
            return None


def describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame[0] else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def http_body(value: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as they come, odd values as text,
    keys JSON cannot have left out."""
    return json.dumps(value, default=repr, skipkeys=True).encode()


def start_instance(example: Example, data: Payload, http: bool) -> str | None:
    if http:
        body = http_body({"definition": example.name, "data": data.build()})
        answer = example.http(
            "POST", "/api/instances", content=body, headers={"content-type": "application/json"}
        )
        return answer.json()["id"] if answer is not None and answer.status_code == 201 else None
    started = example.python(
        f"start({data!r})", lambda: example.rig.engine.start(example.name, data.build())
    )
    return None if started is None else str(started.id)


def act(example: Example, instance_id: str, action: Action) -> None:
    engine = example.rig.engine
    if action.event == "cancel":
        if action.http:
            example.http("POST", f"/api/instances/{instance_id}/cancel", json={"reason": "test"})
        else:
            example.python("cancel", lambda: engine.cancel(instance_id, "test"))
    elif action.http:
        body = http_body({"event": action.event, "data": action.data.build()})
        example.http(
            "POST",
            f"/api/instances/{instance_id}/events",
            content=body,
            headers={"content-type": "application/json"},
        )
    else:
        example.python(
            repr(action), lambda: engine.send(instance_id, action.event, action.data.build())
        )


def leftovers(example: Example, instance_id: str) -> str | None:
    """Why the instance has not settled: an undocumented status, or work still waiting (a
    task not yet answered, a timer not yet fired). None when settled."""
    with example.rig.tables.connect() as conn:
        status, state = conn.execute(
            sa.select(instances_t.c.status, instances_t.c.state).where(
                instances_t.c.id == instance_id
            )
        ).one()
        tasks = conn.execute(
            sa.select(
                tasks_t.c.name, tasks_t.c.status, tasks_t.c.attempt, tasks_t.c.ready_at
            ).where(
                tasks_t.c.instance_id == instance_id, tasks_t.c.status.in_(["ready", "claimed"])
            )
        ).all()
        timers = conn.execute(
            sa.select(timers_t.c.key, timers_t.c.due_at).where(
                timers_t.c.instance_id == instance_id
            )
        ).all()
    if status not in DOCUMENTED:
        return f"status {status!r} in state {state!r}"
    if tasks or timers:
        return (
            f"{status} in {state!r} with tasks {[tuple(t) for t in tasks]} and timers "
            f"{[tuple(t) for t in timers]}"
        )
    return None


def clear_leftovers(example: Example, ids: list[str]) -> None:
    """Drop the unfinished work of an example that went wrong, so a poison timer it left
    behind cannot fail the examples after it."""
    with example.rig.tables.begin() as conn:
        conn.execute(sa.delete(timers_t).where(timers_t.c.instance_id.in_(ids)))
        conn.execute(
            sa.delete(tasks_t).where(
                tasks_t.c.instance_id.in_(ids), tasks_t.c.status.in_(["ready", "claimed"])
            )
        )


def check_reads(example: Example, instance_id: str) -> None:
    """Every read of the instance answers, and its history counts 1..n with no gap."""
    base = f"/api/instances/{instance_id}"
    example.http("GET", base)
    example.http("GET", f"{base}/diagram.svg")
    answer = example.http("GET", f"{base}/history")
    if answer is not None and answer.status_code == 200:
        seqs = [entry["seq"] for entry in answer.json()]
        if seqs != list(range(1, len(seqs) + 1)):
            example.problems.append(f"{instance_id}: history seq over HTTP is {seqs}")
    history = example.python(
        f"history({instance_id})", lambda: example.rig.engine.history(instance_id)
    )
    if history is not None:
        seqs = [entry.seq for entry in history]
        if seqs != list(range(1, len(seqs) + 1)) or not seqs:
            example.problems.append(f"{instance_id}: history seq is {seqs}")
    example.python(f"get({instance_id})", lambda: example.rig.engine.get(instance_id))


# The poisons the issue reported, tried on every run before the generated ones.
NOW_IN_A_TIMER = """
initial: first
states:
  first: {task: poison.json, timeout: 500ms, "on": {done: waiting}}
  waiting:
    "on": {finish: ended}
    after: {200ms: {to: checkpoint, assign: {t: now, x: "(1, 2)"}}}
  checkpoint: {always: [{to: second, if: "True"}, {to: ended}]}
  second:
    task: poison.datetime
    input: "{'at': now, 'keys': {1: 'a', '1': 'b'}}"
    timeout: 500ms
    "on": {done: ended, failed: broken}
  ended: {final: true}
  broken: {final: failed}
"""
DEEP_EVENTS = """
initial: first
states:
  first: {task: poison.echo, input: context, timeout: 500ms, "on": {done: waiting}}
  waiting:
    "on": {poke: {assign: {a: event}}, go: checkpoint, finish: ended}
    after: {1s: checkpoint}
  checkpoint: {always: [{to: second, if: "True"}, {to: ended}]}
  second: {task: poison.hang, timeout: 500ms, "on": {done: ended, failed: broken}}
  ended: {final: true}
  broken: {final: failed}
"""


@POISON
@given(definition=definitions(), instances=INSTANCES)
@example(
    definition=yaml.safe_load(NOW_IN_A_TIMER), instances=[(Payload("leaf", leaf={}), True, [])]
)
@example(
    definition=yaml.safe_load(DEEP_EVENTS),
    instances=[
        (
            Payload("leaf", leaf={"n": 1}),
            False,
            [
                Action("poke", Payload("deep", 900, 1), http=True),
                Action("poke", Payload("deep", 100, (1, 2)), http=False),
                Action("go", Payload("leaf", leaf=datetime(2026, 1, 1, tzinfo=UTC)), http=False),
            ],
        ),
        (Payload("leaf", leaf={1: "a", "1": "b", "n": float("nan")}), False, []),
    ],
)
@example(
    definition=yaml.safe_load(DEEP_EVENTS),
    instances=[
        (Payload("leaf", leaf={"n": 1, "a": "nul \x00 inside"}), True, []),
        (Payload("leaf", leaf={"n": 2, "a": "a lone surrogate \ud800"}), False, []),
        (
            Payload("leaf", leaf={"n": 3}),
            False,
            [
                Action("poke", Payload("leaf", leaf="a lone surrogate \ud800"), http=True),
                Action("poke", Payload("leaf", leaf={"a lone surrogate \ud800": 1}), http=False),
                *[Action("poke", Payload("leaf", leaf="nul \x00 inside"), http=False)] * 4,
                Action("poke", Payload("leaf", leaf="nul \x00 inside"), http=True),
                Action("finish", Payload("leaf", leaf={"n": 4}), http=False),
            ],
        ),
    ],
)
def test_no_poison_stops_a_worker_breaks_a_history_or_answers_500(
    rig: Rig, definition: dict[str, Any], instances: list[tuple[Payload, bool, list[Action]]]
) -> None:
    """Random expressions, payloads and handler outcomes through two worker processes: the
    workers live on, every instance settles in a documented state with its history whole,
    and every HTTP answer is below 500."""
    rig.workers.revive()
    rig.workers.problems()  # what an earlier example left in the logs is not this one's
    name = f"poison_{uuid.uuid4().hex[:12]}"
    source = yaml.safe_dump({"name": name, **definition}, sort_keys=False, width=100)
    note(source)
    example = Example(rig, name)
    deployed = example.http(
        "POST", "/api/definitions", content=source, headers={"content-type": "application/yaml"}
    )
    if deployed is None or deployed.status_code not in (200, 201):
        refusal = "" if deployed is None else deployed.text[:2000]
        pytest.fail(f"the definition was not deployed:\n{source}\n{example.problems} {refusal}")
    ids: list[str] = []
    plans: dict[str, list[Action]] = {}
    for data, http, actions in instances:
        started = start_instance(example, data, http)
        if started is not None:
            ids.append(started)
            plans[started] = actions

    def left_first() -> bool:
        instances = [rig.engine.get(instance_id) for instance_id in ids]
        return all(inst.state != "first" or inst.status != "running" for inst in instances)

    example.python(
        "waiting to leave the first task", lambda: until(left_first, LEAVE_FIRST_SECONDS)
    )
    for instance_id, actions in plans.items():
        for action in actions:
            act(example, instance_id, action)
    unsettled: dict[str, str] = {}

    def settled() -> bool:
        unsettled.clear()
        for instance_id in ids:
            why = leftovers(example, instance_id)
            if why is not None:
                unsettled[instance_id] = why
        return not unsettled

    if not until(settled, SETTLE_SECONDS):
        example.problems.extend(
            f"{instance_id} did not settle in {SETTLE_SECONDS}s: {why}"
            for instance_id, why in unsettled.items()
        )
        clear_leftovers(example, ids)
    for instance_id in ids:
        check_reads(example, instance_id)
        ended = example.python("get", lambda instance_id=instance_id: rig.engine.get(instance_id))
        if ended is not None:
            event(f"an instance ended {ended.status} in {ended.state}")
    event(f"{len(ids)} of {len(instances)} instances started")
    example.http("GET", "/api/instances", params={"definition": name})
    example.http("GET", f"/api/definitions/{name}")
    example.http("GET", f"/api/definitions/{name}/diagram.svg", params={"heat": "true"})
    example.problems.extend(rig.workers.problems())
    if example.problems:
        pytest.fail(
            f"{len(example.problems)} problem(s) with definition\n{source}\ninstances (start "
            f"data, started over HTTP, actions): {instances!r}\n"
            + "\n".join(f"- {p}" for p in example.problems),
            pytrace=False,
        )
