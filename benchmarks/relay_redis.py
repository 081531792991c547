"""Changes relayed to Redis Streams per second: the `Relay` (read the feed, write JSON, XADD
a batch in one pipeline, save the cursor) beside redis-py alone XADDing the same messages in
pipelines of the same size (the ceiling: no database, no JSON)."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

from engine import Engine
from engine.brokers import Relay, open_publisher

from .contention import drop_schema, fresh_schema

REDIS_URL = "redis://127.0.0.1:6379/0"
REPEATS = 5


def redis_answers(url: str = REDIS_URL) -> bool:
    """Whether the Redis server of the benchmark is there."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def relay_and_bare(
    engine_url: str, count: int = 10_000, batch: int = 500, redis_url: str = REDIS_URL
) -> tuple[float, float]:
    """(changes/s by the Relay, messages/s by the bare client), medians of REPEATS runs over
    `count` changes (one started instance each), `batch` per pipeline."""
    import redis

    engine = Engine(engine_url)
    client: Any = redis.Redis.from_url(redis_url)
    stream = f"turnout.bench.{uuid.uuid4().hex[:10]}"
    try:
        engine.deploy("name: bench_relayed\ninitial: a\nstates:\n  a: {on: {flip: a}}\n")
        engine.start_many("bench_relayed", ({} for _ in range(count)), batch=1_000)
        relay_rates, bare_rates = [], []
        for run in range(REPEATS):
            publisher = open_publisher(f"{redis_url}?stream={stream}")
            relay = Relay(engine, publisher, f"bench-{run}", batch=batch)
            began = time.perf_counter()
            while relay.run_once():
                pass
            relay_rates.append(relay.sent / (time.perf_counter() - began))
            publisher.close()
            client.delete(stream)

        messages = [
            {"id": change.id, "body": json.dumps(change.to_json())}
            for change in engine.changes(0, limit=count)
        ]
        for _ in range(REPEATS):
            began = time.perf_counter()
            for start in range(0, len(messages), batch):
                pipeline = client.pipeline(transaction=False)
                for fields in messages[start : start + batch]:
                    pipeline.xadd(stream, fields)
                pipeline.execute()
            bare_rates.append(len(messages) / (time.perf_counter() - began))
            client.delete(stream)
    finally:
        client.delete(stream)
        client.close()
        engine.close()
    return statistics.median(relay_rates), statistics.median(bare_rates)


def relay_and_bare_on_postgres(url: str, count: int = 10_000) -> tuple[float, float]:
    engine_url, schema = fresh_schema(url)
    try:
        return relay_and_bare(engine_url, count)
    finally:
        drop_schema(url, schema)
