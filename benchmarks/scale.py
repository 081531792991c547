"""Figures of size: bulk starts, listing among a million instances, large definitions and
their diagrams, and workers in separate processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import statistics
import string
import threading
import time
from pathlib import Path
from typing import Any

from transitions import Machine

import diagrams
import statemachines
from engine import Engine

HERE = Path(__file__).parent
SPAWN = multiprocessing.get_context("spawn")


def timed(run: Any, repeats: int = 5) -> float:
    """Median seconds of `repeats` calls of `run`."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def chain_definition(states: int) -> str:
    """A definition of `states` states in a chain, each with an event, a way back, a timer."""
    lines = ["name: bench_chain", "initial: s0", "states:"]
    for index in range(states):
        after = f"s{max(index - 1, 0)}"
        lines.append(f"  s{index}: {{on: {{go: s{index + 1}, back: s0}}, after: {{1h: {after}}}}}")
    lines.append(f"  s{states}: {{final: true}}")
    return "\n".join(lines) + "\n"


def load_large_definition(states: int = 1000) -> tuple[float, float]:
    """Seconds to load, validate and compile; seconds for `transitions` to build the bare
    machine of the same states and transitions (its own cost, the floor)."""
    text = chain_definition(states)
    ours = timed(lambda: statemachines.compile_definition(statemachines.load(text)), 3)
    names = [f"s{n}" for n in range(states + 1)]

    def bare() -> None:
        machine = Machine(model=None, states=names, initial="s0", auto_transitions=False)
        for index in range(states):
            machine.add_transition("go", f"s{index}", f"s{index + 1}")
            machine.add_transition("back", f"s{index}", "s0")
            machine.add_transition("after:1h", f"s{index}", f"s{max(index - 1, 0)}")

    return ours, timed(bare, 3)


# One stage of `staged_definition`: ten states in YAML flow style, numbered `stage`, the last
# one going on to `following`.
STAGE = string.Template("""\
  st${stage}_start: {task: w.start${stage}, retry: {attempts: 3},
    on: {done: st${stage}_check, failed: st${stage}_failed}}
  st${stage}_check: {always: [{to: st${stage}_fast, if: context.fast}, {to: st${stage}_slow}]}
  st${stage}_fast: {task: w.fast${stage}, timeout: 30s, on: {done: st${stage}_review}}
  st${stage}_slow: {task: w.slow${stage}, compensate: w.undo${stage},
    on: {done: st${stage}_review}}
  st${stage}_review: {on: {approve: st${stage}_record, reject: st${stage}_rework,
    escalate: st${stage}_escalated}, after: {2d: st${stage}_escalated}}
  st${stage}_rework: {on: {resubmit: st${stage}_review}, after: {7d: st${stage}_failed}}
  st${stage}_escalated: {on: {decide: st${stage}_record, abandon: st${stage}_failed}}
  st${stage}_record: {task: w.record${stage}, on: {done: st${stage}_notify}}
  st${stage}_notify: {foreach: {items: context.people, task: w.mail${stage}},
    on: {done: ${following}}}
  st${stage}_failed: {final: failed}""")


def staged_definition(stages: int = 20) -> str:
    """A realistic large definition: `stages` stages of 10 states (tasks, a choice, a review
    with timers, rework, escalation, a foreach), each ending in the next stage."""
    lines = ["name: bench_staged", "initial: st1_start", "states:"]
    for stage in range(1, stages + 1):
        following = f"st{stage + 1}_start" if stage < stages else "finished"
        lines.append(STAGE.substitute(stage=stage, following=following))
    lines.append("  finished: {final: true}")
    return "\n".join(lines) + "\n"


def render_large_definition(stages: int = 20) -> tuple[float, float]:
    """Seconds to draw a 200-state definition as SVG, and to draw an instance overlay on it
    once the definition's drawing is cached."""
    definition = statemachines.load(staged_definition(stages))
    first = timed(lambda: diagrams.render(definition, "svg"), 1)
    path: list[tuple[str | None, str | None, str | None]] = [(None, None, "st1_start")]
    path += [("done", "st1_start", "st1_check"), (None, "st1_check", "st1_slow")]
    overlay = diagrams.InstanceOverlay(active=["st1_slow"], status="running", path=path)
    return first, timed(lambda: diagrams.render(definition, "dot", overlay=overlay), 5)


def nested_definition(phases: int = 3, sections: int = 3, groups: int = 3, steps: int = 9) -> str:
    """A 300-state chart nested four deep: phases of sections of groups of steps, each level
    a compound state; steps cancel to a top-level state (a bare name found looking outward)
    and jump to the next phase by full name, a pause leaves a phase and comes back through
    its history state."""
    lines = ["name: bench_nested", "initial: p1", "states:"]
    for phase in range(1, phases + 1):
        after = f"p{phase + 1}" if phase < phases else "finished"
        lines += [
            f"  p{phase}:",
            "    initial: s1",
            f"    on: {{done: {after}, pause: paused}}",
            "    states:",
            "      back: {history: deep}",
            "      ended: {final: true}",
        ]
        for section in range(1, sections + 1):
            section_after = f"s{section + 1}" if section < sections else "ended"
            lines += [
                f"      s{section}:",
                "        initial: g1",
                f"        on: {{done: {section_after}}}",
                "        states:",
                "          closed: {final: true}",
            ]
            for group in range(1, groups + 1):
                group_after = f"g{group + 1}" if group < groups else "closed"
                lines += [
                    f"          g{group}:",
                    "            initial: a1",
                    f"            on: {{done: {group_after}}}",
                    "            states:",
                ]
                for step in range(1, steps):
                    moves = [f"next: a{step + 1}", "cancel: cancelled"]
                    if step == 1 and phase < phases:
                        moves.append(f"jump: p{phase + 1}.s{section}.g{group}.a1")
                    lines.append(f"              a{step}: {{on: {{{', '.join(moves)}}}}}")
                lines.append(f"              a{steps}: {{final: true}}")
    lines += [
        "  paused: {on: {resume: p1.back}}",
        "  cancelled: {final: failed}",
        "  finished: {final: true}",
    ]
    return "\n".join(lines) + "\n"


def render_nested_definition() -> float:
    """Seconds to draw a 300-state chart nested four deep as SVG with Graphviz compiled to
    WebAssembly (no `dot` on PATH), once the WebAssembly module is loaded."""
    definition = statemachines.load(nested_definition())
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = str(HERE / "no-such-directory")
    try:
        diagrams.render("name: warm\ninitial: a\nstates:\n  a: {final: true}\n")
        return timed(lambda: diagrams.render(definition, "svg"), 1)
    finally:
        os.environ["PATH"] = path


def bulk_start(workdir: Path, count: int = 100_000) -> float:
    """Seconds for start_many of `count` instances on SQLite."""
    engine = Engine(f"sqlite:///{workdir}/bulk.db")
    engine.deploy(HERE / "definitions" / "three_tasks.yaml")
    began = time.perf_counter()
    engine.start_many("bench_three_tasks", ({"n": n} for n in range(count)))
    elapsed = time.perf_counter() - began
    engine.close()
    return elapsed


def list_among_a_million(workdir: Path, total: int = 1_000_000) -> float:
    """Median seconds to list 50 instances in one state among `total` on SQLite."""
    url = f"sqlite:///{workdir}/million.db"
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    template = engine.start("bench_toggle").id
    engine.close()
    # Copies of one real row, made by SQL: one instance in a hundred is in state 'b'.
    conn = sqlite3.connect(f"{workdir}/million.db")
    conn.execute(
        "INSERT INTO turnout_instances (id, key, definition, version, state, active, status, "
        "context, machine, revision, history_seq, created_at, updated_at) "
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT printf('%032x', i), NULL, definition, version, "
        "CASE WHEN i % 100 = 0 THEN 'b' ELSE 'a' END, active, status, context, machine, "
        "revision, history_seq, created_at, updated_at "
        "FROM n, turnout_instances WHERE turnout_instances.id = ?",
        (total - 1, template),
    )
    conn.commit()
    conn.close()
    engine = Engine(url)
    try:
        assert len(engine.instances(definition="bench_toggle", state="b", limit=50)) == 50
        return timed(lambda: engine.instances(definition="bench_toggle", state="b", limit=50), 21)
    finally:
        engine.close()


def _work_until(url: str, stop_file: str, options: dict[str, Any]) -> None:
    engine = Engine(url)
    engine.task("bench.step")(lambda value: None)
    stop = threading.Event()

    def follow() -> None:
        while not Path(stop_file).exists():
            time.sleep(0.02)
        stop.set()

    threading.Thread(target=follow, daemon=True).start()
    engine.work(stop=stop, poll_interval=0.01, **options)
    engine.close()


def tasks_by_worker_processes(
    url: str,
    workdir: Path,
    instances: int = 1000,
    processes: int = 2,
    definition: str = "bench_three_tasks",
    **options: Any,
) -> float:
    """Instances of `definition` finished per second by `processes` workers: the three-task
    workflow, or `bench_parent` (one task, then a child instance of `bench_child` that runs
    two tasks: the same three tasks, with a child started and its result delivered).
    `options` go to `Engine.work` (concurrency 4 and its batching defaults otherwise)."""
    options = {"concurrency": 4, **options}
    engine = Engine(url)
    for file in ("three_tasks.yaml", "child.yaml", "parent.yaml"):
        engine.deploy(HERE / "definitions" / file)
    stop_file = workdir / f"stop-{time.monotonic_ns()}"
    workers = [
        SPAWN.Process(target=_work_until, args=(url, str(stop_file), options))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(3)  # let the workers import and connect before the clock starts
    began = time.perf_counter()
    engine.start_many(definition, ({"n": n} for n in range(instances)))
    # Looking every 50 ms: the look costs CPU the two workers share with this process, and
    # 50 ms is within 3% of a run of two seconds or more.
    while engine.instances(definition=definition, status="running", limit=1):
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    stop_file.touch()
    for worker in workers:
        worker.join(60)
    engine.close()
    return instances / elapsed


def _worker_memory(url: str, out: str) -> None:
    """Child process: run every ready task and due timer, then report its peak memory.

    The peak comes from VmHWM, which belongs to this process's own memory; ru_maxrss would
    also count the parent's pages that the process had before it started Python afresh.
    """
    engine = Engine(url)
    engine.task("bench.step")(lambda value: None)
    engine.run_until_idle()
    engine.close()
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    Path(out).write_text(peak_kib)


def worker_memory(workdir: Path, waiting: int, tasks: int = 200) -> float:
    """Peak memory (MiB) of a worker process that runs `tasks` three-task instances on an
    SQLite database that also holds `waiting` instances waiting for events."""
    url = f"sqlite:///{workdir}/memory-{waiting}.db"
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    engine.deploy(HERE / "definitions" / "three_tasks.yaml")
    engine.start_many("bench_toggle", ({} for _ in range(waiting)))
    engine.start_many("bench_three_tasks", ({} for _ in range(tasks)))
    engine.close()
    out = workdir / f"memory-{waiting}.txt"
    child = SPAWN.Process(target=_worker_memory, args=(url, str(out)))
    child.start()
    child.join(300)
    return int(out.read_text()) / 1024
