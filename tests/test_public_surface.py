"""Every name each package exports, written out: a change to the public surface is a change
to this file, seen in review. A name leaves `__all__` only with a reason users can read."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "statemachines": [
        "EXAMPLES",
        "CompiledMachine",
        "Definition",
        "DefinitionDiff",
        "DefinitionError",
        "EventRejected",
        "ExpressionError",
        "Failure",
        "HistoryReport",
        "HistoryResult",
        "InvalidInput",
        "Problem",
        "Region",
        "Retry",
        "RetryPolicy",
        "Run",
        "Snapshot",
        "State",
        "Status",
        "Step",
        "Transition",
        "TurnoutError",
        "ValueNotStorable",
        "assert_replays",
        "check_histories",
        "compile_definition",
        "diff_definitions",
        "examples",
        "json_schema",
        "load",
        "simulate",
        "storable",
    ],
    "engine": [
        "ArchivedInstance",
        "AsyncEngine",
        "Change",
        "ClaimedTask",
        "ConcurrentUpdate",
        "Conflict",
        "ContextTooLarge",
        "DatabaseUnavailable",
        "DefinitionError",
        "DefinitionNotFound",
        "Deployment",
        "DiagramTooLarge",
        "DuplicateKey",
        "Engine",
        "EventOutcome",
        "EventRejected",
        "ExpressionError",
        "HistoryEntry",
        "HookContext",
        "AmbiguousId",
        "InputMismatch",
        "Instance",
        "InstancePage",
        "Pending",
        "PendingTask",
        "InstanceNotFound",
        "InvalidInput",
        "MigrationPlan",
        "MigrationResult",
        "PurgeResult",
        "NotFound",
        "RedriveOutcome",
        "RedriveRefused",
        "RenderError",
        "ResetRefused",
        "Schedule",
        "ScheduleExists",
        "ScheduleNotFound",
        "SchemaMismatch",
        "SchemaOutdated",
        "TaskNotFound",
        "TaskContext",
        "TaskFailure",
        "TaskLimit",
        "TaskNotHeld",
        "TurnoutError",
        "UnknownState",
        "UsageError",
        "ValueNotStorable",
        "read_archive",
        "VersionDiff",
    ],
    "diagrams": [
        "DIFF_STYLES",
        "FORMATS",
        "LAYOUT_MEMORY",
        "LAYOUT_SECONDS",
        "MAX_LAID_OUT",
        "CacheInfo",
        "DiagramTooLarge",
        "DiffStyle",
        "Drawing",
        "HeatOverlay",
        "InstanceOverlay",
        "Overlay",
        "RenderError",
        "build_drawing",
        "cache_info",
        "diff_diagram",
        "dot_program",
        "render",
        "to_dot",
        "to_mermaid",
    ],
    "engine.api": ["create_app"],
    "engine.cli": ["app", "main"],
}


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_exported_names_are_exactly_these(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(EXPORTS[package])
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_every_exported_name_is_defined(package: str) -> None:
    module = importlib.import_module(package)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_engine_exports_the_whole_error_tree() -> None:
    """Every public error of `statemachines.errors` can be caught as `engine.<Name>`."""
    import engine
    from statemachines import errors

    tree = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, errors.TurnoutError)
        and not name.startswith("_")
        and value.__module__ == errors.__name__
    ]
    missing = [name for name in tree if name not in engine.__all__]
    assert missing == []


def test_statemachines_simulate_stays_the_function_once_its_module_is_imported() -> None:
    """The package loads its names on first use; importing the submodule `simulate` (as
    `Failure` does) leaves `statemachines.simulate` the function. A fresh interpreter, so that
    nothing else has imported the package yet."""
    import subprocess
    import sys

    check = (
        "import types, statemachines\n"
        "from statemachines import Failure\n"
        "import statemachines.simulate\n"
        "from statemachines import simulate\n"
        "assert not isinstance(simulate, types.ModuleType), simulate\n"
        "assert statemachines.simulate is simulate and callable(simulate)\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
