"""Recorded histories checked against a definition: would it have done, entry for entry, what
the instances it is to replace did? A team runs it in its tests (`check_histories(...)
.assert_replays()`) so a changed definition is known to accept last month's histories before
it is deployed; `turnout export` writes the histories and `turnout replay` checks them.

The export format is JSON lines, one history entry a line, as `HistoryEntry.to_json()` writes
it with the instance it belongs to, the definition's name and the version the instance is on:

    {"instance": "4f1c...", "definition": "order", "version": 3, "seq": 1,
     "at": "2026-01-01T00:00:00Z", "kind": "start", "event": null, "from_state": null,
     "to_state": "pay", "data": {"amount": 12}}

Lines are grouped by `instance` wherever they are in the file, and an instance's entries are
replayed in `seq` order. `definition` and `version` may be left out; a line without
`instance` belongs to the history named after its file. A file that holds one JSON array
(`turnout history ID --json`) is one instance's history. Each instance is replayed through
the definition from its `start` entry, and the first entry replay would have written
otherwise is its divergence (`statemachines.replay`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from io import TextIOBase
from pathlib import Path
from typing import Any

from .compile import CompiledMachine, compile_definition
from .errors import InvalidInput, TurnoutError
from .loading import load
from .model import Definition
from .operators import replay_redrive, replay_reset
from .replay import OPERATOR_KINDS, Divergence, Recorded, RecordedEntry, replay
from .steps import Snapshot, Step

# The files of a directory that are read: JSON lines, or a JSON array of one history.
HISTORY_SUFFIXES = (".jsonl", ".ndjson", ".json")
# How many instances a summary or an assertion lists before "and N more", and how many
# characters of an entry's JSON it shows (the report's `to_json()` keeps them whole).
LISTED = 20
SHOWN_CHARACTERS = 400
Histories = str | Path | TextIOBase | Iterable[Any] | Mapping[str, Iterable[Any]]


def history_line(
    instance: str, definition: str, version: int | None, entry: Mapping[str, Any]
) -> dict[str, Any]:
    """One line of the export format: a history entry's JSON form (`HistoryEntry.to_json()`)
    with the instance it belongs to, its definition and version first."""
    return {"instance": instance, "definition": definition, "version": version, **entry}


@dataclass(frozen=True)
class History:
    """One instance's recorded history as read: its `entries` in `seq` order, `source` where
    it was read from (`FILE:LINE` of its first line), and the definition and version the
    export names (None: it does not)."""

    instance: str
    entries: list[Recorded]
    source: str = ""
    definition: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class HistoryResult:
    """What replaying one instance's history gave. `replayed` is the last entry that replayed
    as recorded (0: none); `state` and `status`, where replay left the instance; `divergence`,
    the first entry replay would have written otherwise (None: every entry replayed), or
    the operator's entry replay stopped at: a `migrated` one (a `redrive` or `reset` is made
    again on the definition checked, and stops replay only when it cannot be)."""

    instance: str
    source: str
    version: int | None
    entries: int
    replayed: int
    state: str | None
    status: str | None
    divergence: Divergence | None

    @property
    def stopped(self) -> bool:
        """Whether replay stopped at an operator's entry: what an operator did by hand is
        not the definition's to replay, and the entries before it replayed as recorded."""
        divergence = self.divergence
        return divergence is not None and divergence.recorded.get("kind") in OPERATOR_KINDS

    @property
    def ok(self) -> bool:
        """Whether the definition accepts this history (every entry, or every entry before
        an operator's)."""
        return self.divergence is None or self.stopped

    @property
    def outcome(self) -> str:
        """`replays`, `diverges` or `stops` (at an operator's entry)."""
        if self.divergence is None:
            return "replays"
        return "stops" if self.stopped else "diverges"

    def describe(self) -> str:
        """This history's lines of a summary: one, and for a divergence the entry as
        recorded and as replayed."""
        where = f" ({self.source})" if self.source else ""
        head = f"instance {self.instance}{where}"
        divergence = self.divergence
        if divergence is None:
            state = f", {self.status} in {self.state}" if self.state else ""
            return f"{head} replays: {self.entries} entries{state}"
        if self.stopped:
            kind = divergence.recorded.get("kind")
            return (
                f"{head} replays up to entry {self.replayed}; entry {divergence.seq} is an "
                f"operator's {kind!r}, which the definition alone does not replay: "
                f"{divergence.reason}"
            )
        lines = [
            f"{head} diverges at entry {divergence.seq}: {divergence.reason}",
            f"    recorded: {_compact(divergence.recorded)}",
        ]
        if divergence.replayed is not None:
            lines.append(f"    replayed: {_compact(divergence.replayed)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "source": self.source,
            "version": self.version,
            "outcome": self.outcome,
            "entries": self.entries,
            "replayed": self.replayed,
            "state": self.state,
            "status": self.status,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
        }


@dataclass(frozen=True)
class HistoryReport:
    """Every history checked against one definition, in the order they were read."""

    definition: str
    results: tuple[HistoryResult, ...]

    @property
    def ok(self) -> bool:
        """Whether the definition accepts every history."""
        return all(result.ok for result in self.results)

    @property
    def divergent(self) -> list[HistoryResult]:
        """The histories the definition would have written otherwise."""
        return [result for result in self.results if not result.ok]

    @property
    def stopped(self) -> list[HistoryResult]:
        """The histories replayed up to an operator's entry (and accepted so far)."""
        return [result for result in self.results if result.stopped]

    def counts(self) -> str:
        """`order: 3 histories: 2 replay, 1 diverges` (and how many stop, when some do)."""
        total, divergent, stopped = len(self.results), len(self.divergent), len(self.stopped)
        parts = [_verb(total - divergent - stopped, "replay"), _verb(divergent, "diverge")]
        if stopped:
            parts.append(_verb(stopped, "stop") + " at an operator's entry")
        return f"{self.definition}: {_histories(total)}: {', '.join(parts)}"

    def summary(self, limit: int | None = None) -> str:
        """The counts, then each history that diverges (with the entry as recorded and as
        replayed) or stops at an operator's entry; `limit` lists at most that many."""
        listed = [result for result in self.results if result.divergence is not None]
        shown = listed if limit is None else listed[:limit]
        lines = [self.counts(), *(result.describe() for result in shown)]
        if len(listed) > len(shown):
            lines.append(f"... and {len(listed) - len(shown)} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict[str, Any]:
        return {
            "definition": self.definition,
            "ok": self.ok,
            "histories": len(self.results),
            "divergent": len(self.divergent),
            "stopped": len(self.stopped),
            "results": [result.to_json() for result in self.results],
        }

    def assert_replays(self, limit: int = LISTED) -> None:
        """Raise AssertionError, listing the divergent histories (at most `limit` of them),
        unless the definition accepts every history."""
        __tracebackhide__ = True  # pytest shows the test's line, not this one
        divergent = self.divergent
        if not divergent:
            return
        lines = [
            f"{len(divergent)} of {_histories(len(self.results))} "
            f"{'does' if len(divergent) == 1 else 'do'} not replay through {self.definition}:",
            *(result.describe() for result in divergent[:limit]),
        ]
        if len(divergent) > limit:
            lines.append(f"... and {len(divergent) - limit} more")
        raise AssertionError("\n".join(lines))


def check_histories(
    definition: Definition | CompiledMachine | str | Path, histories: Histories
) -> HistoryReport:
    """Replay recorded histories through `definition` and report, for each instance, whether
    it replays or the first entry where it diverges.

    `definition` is a Definition or what `load` reads (a file path, YAML text).
    `histories` is a file in the export format (`turnout export`: JSON lines), a file of one
    JSON array (`turnout history ID --json`), a directory of such files (*.jsonl, *.ndjson,
    *.json, by name), or in Python an iterable of export lines (dicts), or of histories (each
    a list of entries: dicts, `RecordedEntry` or the engine's `HistoryEntry`), or a mapping of
    instance id to its entries. InvalidInput, naming the file and line, for an entry that
    cannot be read, a history of another definition, or no history at all; OSError for a
    file that cannot be read.

        check_histories("order.yaml", "histories.jsonl").assert_replays()
    """
    if isinstance(definition, CompiledMachine):
        machine = definition
    else:
        machine = compile_definition(load(definition))
    name = machine.definition.name
    results: list[HistoryResult] = []
    for history in read_histories(histories):
        if history.definition is not None and history.definition != name:
            where = f"{history.source}: " if history.source else ""
            raise InvalidInput(
                f"{where}instance {history.instance} is a history of {history.definition!r}, "
                f"not of {name!r}"
            )
        results.append(_checked(machine, history))
    if not results:
        raise InvalidInput(f"no history to replay in {_named(histories)}")
    return HistoryReport(name, tuple(results))


def assert_replays(
    definition: Definition | CompiledMachine | str | Path, histories: Histories
) -> HistoryReport:
    """`check_histories(definition, histories).assert_replays()` for a test: AssertionError
    listing the instances whose histories diverge; the report when none does."""
    __tracebackhide__ = True
    report = check_histories(definition, histories)
    report.assert_replays()
    return report


def _repairs(
    machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """A `redrive` or `reset` entry made again on the definition checked (they are made on
    the version the instance is on); a `migrated` one moved the instance to another version,
    which a check of one definition does not replay: replay stops there."""
    if entry.kind == "redrive":
        return replay_redrive(machine, snapshot, entry)
    if entry.kind == "reset":
        return replay_reset(machine, snapshot, entry)
    raise TurnoutError(f"a {entry.kind!r} entry moved the instance to another version")


def _checked(machine: CompiledMachine, history: History) -> HistoryResult:
    replayed = replay(machine, history.entries, operator=_repairs)
    final = replayed.final
    return HistoryResult(
        instance=history.instance,
        source=history.source,
        version=history.version,
        entries=len(history.entries),
        replayed=final.last if final is not None else 0,
        state=final.state if final is not None else None,
        status=str(final.status) if final is not None else None,
        divergence=replayed.divergence,
    )


# -- reading -----------------------------------------------------------------------------------
def read_histories(histories: Histories) -> Iterator[History]:
    """The histories `histories` holds (see `check_histories`), one instance at a time."""
    if isinstance(histories, str | Path):
        path = Path(histories)
        if path.is_dir():
            files = sorted(
                found
                for found in path.iterdir()
                if found.is_file() and found.name.endswith(HISTORY_SUFFIXES)
            )
            for file in files:
                yield from _file_histories(file)
        else:
            yield from _file_histories(path)
    elif isinstance(histories, Mapping):
        for instance, entries in histories.items():
            yield _history(str(instance), list(entries), "")
    elif isinstance(histories, TextIOBase):
        name = str(getattr(histories, "name", "<stream>"))
        yield from _text_histories(histories.read(), name, "history")
    else:
        yield from _given_histories(histories)


def _file_histories(path: Path) -> Iterator[History]:
    """The histories of one file. JSON lines are read twice: first to find each instance's
    last line, then to replay each instance once its last line is read, so only the
    instances whose lines are still to come are held (one, in an export)."""
    with path.open(encoding="utf-8", errors="replace") as file:
        head = file.read(64).lstrip()
    if head.startswith("["):
        yield from _text_histories(_read(path), str(path), path.stem)
        return
    last: dict[str, int] = {}
    for number, value in _file_lines(path):
        last[_instance_of(value, path.stem)] = number
    open_lines: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for number, value in _file_lines(path):
        instance = _instance_of(value, path.stem)
        open_lines.setdefault(instance, []).append((number, value))
        if last[instance] == number:
            lines = open_lines.pop(instance)
            places = [f"{path}:{number}" for number, _ in lines]
            yield _history(instance, [value for _, value in lines], places[0], places)


def _text_histories(text: str, name: str, default: str) -> Iterator[History]:
    """The histories of text read whole: one JSON array (`turnout history ID --json`: the
    entries of one history, or export lines of several), or JSON lines."""
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{name}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not all(isinstance(value, dict) for value in values):
            raise InvalidInput(f"{name}: a JSON array of history entries (objects) was expected")
        entries: dict[str, list[dict[str, Any]]] = {}
        for value in values:
            entries.setdefault(_instance_of(value, default), []).append(value)
        for instance, found in entries.items():
            yield _history(instance, found, name)
        return
    lines: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for number, value in _lines(text.splitlines(), name):
        lines.setdefault(_instance_of(value, default), []).append((number, value))
    for instance, numbered in lines.items():
        places = [f"{name}:{number}" for number, _ in numbered]
        yield _history(instance, [value for _, value in numbered], places[0], places)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason})") from None


def _file_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as file:
        try:
            yield from _lines(file, str(path))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path}: not UTF-8 text ({exc.reason})") from None


def _lines(lines: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each line of JSON lines that is not blank."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{name}:{number}: not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(value, dict):
            raise InvalidInput(f"{name}:{number}: each line must be a history entry (object)")
        yield number, value


def _given_histories(histories: Iterable[Any]) -> Iterator[History]:
    """Histories given in Python: each item an export line (grouped by instance, held until
    the end) or one instance's entries."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for number, item in enumerate(histories, 1):
        if isinstance(item, Mapping):
            lines.setdefault(_instance_of(item, "history"), []).append(dict(item))
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            entries = list(item)
            first = entries[0] if entries else None
            instance = _instance_of(first, "") if isinstance(first, Mapping) else ""
            instance = instance or str(getattr(first, "instance_id", "") or f"#{number}")
            yield _history(instance, entries, "")
        else:
            raise InvalidInput(
                f"history #{number} is a {type(item).__name__}: give export lines (dicts) "
                "or each instance's entries (a list)"
            )
    for instance, entries in lines.items():
        yield _history(instance, entries, "")


def _history(
    instance: str, entries: list[Any], source: str, places: list[str] | None = None
) -> History:
    """One instance's history from its entries (dicts, or entries already read); `places`,
    the `FILE:LINE` each entry was read from, to say where a bad one is."""
    recorded: list[Recorded] = []
    definition: str | None = None
    version: int | None = None
    for position, entry in enumerate(entries):
        if places is not None:
            where = places[position]
        else:
            where = f"{source or f'instance {instance}'}, entry #{position + 1}"
        if isinstance(entry, Mapping):
            recorded.append(_entry(entry, where))
            definition = _text(entry.get("definition")) or definition
            version = _number(entry.get("version")) or version
        elif all(hasattr(entry, name) for name in ("seq", "at", "kind")):
            recorded.append(entry)
            definition = _text(getattr(entry, "definition", None)) or definition
        else:
            raise InvalidInput(f"{where}: not a history entry")
    recorded.sort(key=lambda entry: entry.seq)
    return History(instance, recorded, source, definition, version)


def _entry(value: Mapping[str, Any], where: str) -> RecordedEntry:
    """An entry of the export format; InvalidInput saying what is wrong with it."""
    missing = [name for name in ("seq", "at", "kind") if value.get(name) is None]
    if missing:
        raise InvalidInput(f"{where}: a history entry needs {', '.join(missing)}")
    try:
        return RecordedEntry.from_json(dict(value))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: not a history entry: {exc}") from None


def _instance_of(value: Mapping[str, Any], default: str) -> str:
    instance = value.get("instance")
    return default if instance is None else str(instance)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _named(histories: Histories) -> str:
    return str(histories) if isinstance(histories, str | Path) else "the histories given"


def _histories(count: int) -> str:
    return f"{count} histor{'y' if count == 1 else 'ies'}"


def _verb(count: int, verb: str) -> str:
    """`1 diverges`, `2 diverge`."""
    return f"{count} {verb}{'s' if count == 1 else ''}"


def _compact(value: Any) -> str:
    """`value` as one line of JSON, cut to SHOWN_CHARACTERS with an ellipsis."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"
