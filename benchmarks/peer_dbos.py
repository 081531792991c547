"""The peer's side of benchmarks/peer.py: DBOS Transact running the same workloads on the same
PostgreSQL server, configured as a user would (durable, its system database on that server).

Each run is a process of its own, started by benchmarks/peer.py: DBOS is one instance per
process, and a fresh process leaves nothing behind for the next run. This module is imported
only in those processes, and only when `dbos` is installed (the `bench` extra).
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import sqlalchemy
from dbos import DBOS, DBOSClient, SendMessage

APPLICATION = "turnout-bench"
# One fixed application version: the process enqueuing and the processes dequeuing must agree.
VERSION = "bench"
QUEUE = "bench"
# Workflows run at once by one process, and how often its queue is polled: the settings of
# turnout's worker in the same figures (work(concurrency=4, poll_interval=0.01)).
CONCURRENCY = 4
POLL_INTERVAL = 0.01
# How long a waiting workflow waits for its message: longer than any run.
WAIT_SECONDS = 600.0
SPAWN = multiprocessing.get_context("spawn")


@DBOS.step()
def bench_step(value: int) -> None:
    """A step that does nothing: the durable bookkeeping around it is what is measured."""


@DBOS.workflow(name="bench_three_steps")
def three_steps(value: int) -> None:
    bench_step(value)
    bench_step(value)
    bench_step(value)


@DBOS.workflow(name="bench_receiver")
def receiver(messages: int) -> int:
    """Says it is waiting, then receives `messages` messages; returns how many arrived."""
    DBOS.set_event("waiting", True)
    received = 0
    for _ in range(messages):
        if DBOS.recv("flip", timeout_seconds=WAIT_SECONDS) is not None:
            received += 1
    return received


@DBOS.workflow(name="bench_waiter")
def waiter() -> bool:
    """Waits for one message (turnout's counterpart: an instance waiting in its first state)."""
    return DBOS.recv("release", timeout_seconds=WAIT_SECONDS) is not None


def launch(url: str, listen: list[str] | None = None) -> None:
    """DBOS as an application runs it, with its system database at `url`; `listen` names the
    queues this process takes workflows from (all of them when None)."""
    DBOS(
        config={
            "name": APPLICATION,
            "system_database_url": url,
            "application_version": VERSION,
            "log_level": "WARNING",
        }
    )
    if listen is not None:
        DBOS.listen_queues(listen)
    DBOS.launch()


class Enqueuer:
    """Enqueues three-step workflows, many in one transaction (the counterpart of
    turnout's start_many), through DBOS's client."""

    def __init__(self, url: str) -> None:
        self.client = DBOSClient(system_database_url=url, application_name=APPLICATION)
        self.engine = sqlalchemy.create_engine(
            url.replace("postgresql://", "postgresql+psycopg://")
        )

    def __call__(self, count: int) -> None:
        with self.engine.begin() as connection:
            for number in range(count):
                self.client.enqueue_in_transaction(
                    connection,
                    {
                        "workflow_name": "bench_three_steps",
                        "queue_name": QUEUE,
                        "app_version": VERSION,
                    },
                    number,
                )

    def close(self) -> None:
        self.client.destroy()
        self.engine.dispose()


def wait_until_done() -> None:
    """Until no workflow is enqueued or running, looking every 50 ms as turnout's side does."""
    while DBOS.list_workflows(
        status=["ENQUEUED", "PENDING"], limit=1, load_input=False, load_output=False
    ):
        time.sleep(0.05)


def succeeded() -> int:
    return len(DBOS.list_workflows(status="SUCCESS", load_input=False, load_output=False))


def register_queue() -> None:
    DBOS.register_queue(QUEUE, worker_concurrency=CONCURRENCY, polling_interval_sec=POLL_INTERVAL)


def workflows_in_one_process(url: str, count: int) -> float:
    """Three-step workflows completed per second by the process that enqueued them."""
    launch(url)
    enqueue = Enqueuer(url)
    try:
        register_queue()
        enqueue(1)  # warm-up: the queue's thread is running, the code paths are loaded
        wait_until_done()
        began = time.perf_counter()
        enqueue(count)
        wait_until_done()
        elapsed = time.perf_counter() - began
        assert succeeded() == count + 1, "a workflow did not complete"
        return count / elapsed
    finally:
        enqueue.close()
        DBOS.destroy()


def _queue_worker(url: str, ready: Any, stop: Any) -> None:
    """Child process: DBOS taking workflows from the queue until told to stop."""
    launch(url, listen=[QUEUE])
    ready.set()
    stop.wait()
    DBOS.destroy()


def workflows_by_worker_processes(url: str, count: int, processes: int = 2) -> float:
    """Three-step workflows completed per second by `processes` processes taking them from a
    queue; this process enqueues them and takes none."""
    launch(url, listen=[])  # creates the system database's tables before the workers start
    register_queue()
    ready = [SPAWN.Event() for _ in range(processes)]
    stop = SPAWN.Event()
    workers = [SPAWN.Process(target=_queue_worker, args=(url, flag, stop)) for flag in ready]
    for worker in workers:
        worker.start()
    enqueue = Enqueuer(url)
    try:
        for flag in ready:
            assert flag.wait(120), "a DBOS worker process did not start"
        time.sleep(1)  # their queue threads list the queue when launched: let them settle
        began = time.perf_counter()
        enqueue(count)
        wait_until_done()
        elapsed = time.perf_counter() - began
        assert succeeded() == count, "a workflow did not complete"
        return count / elapsed
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
        enqueue.close()
        DBOS.destroy()


def events_to_waiting_workflows(url: str, workflows: int, count: int) -> float:
    """Messages per second sent with DBOS.send to `workflows` workflows waiting in DBOS.recv,
    counted when every message has been received (each workflow's last recv returned)."""
    launch(url)
    try:
        each = count // workflows
        handles = [DBOS.start_workflow(receiver, each) for _ in range(workflows)]
        ids = [handle.get_workflow_id() for handle in handles]
        for workflow_id in ids:
            assert DBOS.get_event(workflow_id, "waiting", timeout_seconds=120)
        began = time.perf_counter()
        for number in range(each * workflows):
            DBOS.send(ids[number % workflows], number, "flip")
        received: int = sum(handle.get_result() for handle in handles)
        elapsed = time.perf_counter() - began
        assert received == each * workflows, "a message was not received"
        return received / elapsed
    finally:
        DBOS.destroy()


def starts(url: str, count: int) -> float:
    """Workflows started per second with DBOS.start_workflow, each then waiting for a message
    (counted when start_workflow returns: the workflow is recorded and handed to a thread)."""
    launch(url)
    try:
        began = time.perf_counter()
        handles = [DBOS.start_workflow(waiter) for _ in range(count)]
        elapsed = time.perf_counter() - began
        # Not timed: every workflow released, and shown to have been waiting for its message.
        DBOS.send_bulk(
            [SendMessage(handle.get_workflow_id(), True, "release") for handle in handles]
        )
        assert all(handle.get_result() for handle in handles), "a workflow was not waiting"
        return count / elapsed
    finally:
        DBOS.destroy()
