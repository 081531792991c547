"""Many senders: processes sending events to shared instances at once, on PostgreSQL.

Compares row locks with optimistic revision checks, the one-round-trip send with the one that
reads the row first, and one sender with four; after each run
the history is counted, so a lost or doubled event shows up as a discrepancy.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from engine import Engine

HERE = Path(__file__).parent


def fresh_schema(url: str) -> tuple[str, str]:
    """A new schema for one run; returns (engine URL, schema name)."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _random_order(ids: list[str], count: int, seed: int) -> list[str]:
    # Each sender picks its instances at random (seeded, so runs repeat): senders walking one
    # order in step would queue behind each other's row locks, a convoy no real load makes.
    pick = random.Random(seed)
    return [ids[pick.randrange(len(ids))] for _ in range(count)]


def _sender(
    url: str, locking: str, send_path: str, order: list[str], ready: Any, start: Any, spans: Any
) -> None:
    engine = Engine(url, locking=locking, send_path=send_path)
    engine.allowed(order[0])  # connected, definition loaded and compiled: not part of the run
    ready.wait()
    start.wait()
    began = time.monotonic()  # the system-wide clock: comparable between processes
    for instance_id in order:
        engine.send(instance_id, "flip")
    spans.put((began, time.monotonic()))
    engine.close()


def run(
    url: str,
    processes: int,
    events_each: int,
    instances: int,
    locking: str,
    send_path: str = "one_trip",
) -> tuple[float, int]:
    """Events per second for `processes` senders, and the count of discrepancies."""
    engine_url, schema = fresh_schema(url)
    try:
        engine = Engine(engine_url)
        engine.deploy(HERE / "definitions" / "toggle.yaml")
        ids = [engine.start("bench_toggle").id for _ in range(instances)]
        context = multiprocessing.get_context("spawn")
        ready = context.Barrier(processes + 1)
        start = context.Event()
        spans = context.Queue()
        orders = [_random_order(ids, events_each, seed) for seed in range(processes)]
        workers = [
            context.Process(
                target=_sender,
                args=(engine_url, locking, send_path, order, ready, start, spans),
            )
            for order in orders
        ]
        for worker in workers:
            worker.start()
        ready.wait()
        start.set()
        # From the first sender's first event to the last one's last: process start-up and
        # shutdown are not part of it.
        times = [spans.get(timeout=120) for _ in workers]  # a sender that died: fail, not hang
        for worker in workers:
            worker.join()
        elapsed = max(end for _, end in times) - min(began for began, _ in times)
        applied = sum(engine.get(instance_id).revision - 1 for instance_id in ids)
        history = sum(len(engine.history(instance_id)) - 1 for instance_id in ids)
        expected = processes * events_each
        engine.close()
        return expected / elapsed, abs(applied - expected) + abs(history - expected)
    finally:
        drop_schema(url, schema)
