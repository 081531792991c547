"""Waiting for the change feed: on PostgreSQL another process's commit wakes a waiter
(LISTEN/NOTIFY) unless the engine was made with `listen=False`; its own commits always do."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def engines(postgres_url: str) -> Iterator[tuple[Engine, Engine, Engine]]:
    """A listening engine, one that does not listen, and a third that commits."""
    made = (Engine(postgres_url), Engine(postgres_url, listen=False), Engine(postgres_url))
    made[2].deploy(DEFINITIONS / "counter.yaml")
    try:
        yield made
    finally:
        for engine in made:
            engine.close()


def commit_soon(engine: Engine, delay: float = 0.2) -> threading.Thread:
    """Start a counter on `engine` from another thread once `delay` seconds have passed."""

    def start() -> None:
        time.sleep(delay)
        engine.start("counter", {"count": 0})

    thread = threading.Thread(target=start)
    thread.start()
    return thread


def test_another_engines_commit_wakes_a_listening_waiter_at_once(
    engines: tuple[Engine, Engine, Engine],
) -> None:
    listening, _, other = engines
    listening.wait_for_changes(0.01)  # the LISTEN is in place before the commit
    began = time.monotonic()
    thread = commit_soon(other)
    try:
        assert listening.wait_for_changes(20) is True
    finally:
        thread.join()
    assert time.monotonic() - began < 10


def test_an_engine_that_does_not_listen_is_woken_only_by_its_own_commits(
    engines: tuple[Engine, Engine, Engine],
) -> None:
    _, deaf, other = engines
    thread = commit_soon(other, 0.05)
    try:
        assert deaf.wait_for_changes(0.5) is False
    finally:
        thread.join()
    deaf.deploy(DEFINITIONS / "counter.yaml")
    deaf.start("counter", {"count": 0})
    assert deaf.wait_for_changes(20) is True


def test_listen_is_an_engine_and_async_engine_option(postgres_url: str, clock: Any) -> None:
    from engine import AsyncEngine

    deaf = AsyncEngine(postgres_url, clock, listen=False)
    try:
        assert deaf.sync.listener.listen is False
    finally:
        deaf.sync.close()
