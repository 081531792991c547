"""The figures of operating turnout: purging finished instances, and searching by context
among a million instances."""

from __future__ import annotations

from pathlib import Path

from .figures import Figure


def purge_figures(workdir: Path, postgres: str | None) -> list[Figure]:
    """Engine.purge of finished instances beside start_many of as many, same run and database
    (5,000 finished instances on each)."""
    from .contention import drop_schema, fresh_schema
    from .purge import start_and_purge_rates

    measured = [("SQLite", 5000, start_and_purge_rates(f"sqlite:///{workdir}/purge.db", 5000))]
    if postgres:
        url, schema = fresh_schema(postgres)
        try:
            measured.append(("PostgreSQL", 5000, start_and_purge_rates(url, 5000)))
        finally:
            drop_schema(postgres, schema)
    return [
        Figure(
            f"purge of {count:,} finished instances, 500 per batch ({label})",
            "instances/s",
            purged,
            "start_many of as many, same run (500 per transaction)",
            started,
            "reported",
        )
        for label, count, (started, purged) in measured
    ]


def context_search_figures(workdir: Path, postgres: str | None) -> list[Figure]:
    """`where=` among 1,000,000 instances, first page, with the documented index (see
    context_search.py), beside the same before the index or the listing without `where`."""
    from . import context_search

    found = [context_search.on_sqlite(workdir)]
    if postgres:
        found.append(context_search.on_postgres(postgres))
    return [
        Figure(name, "ms", value, baseline_name, baseline, target)
        for run in found
        for name, value, baseline_name, baseline, target in run.figures()
    ]
