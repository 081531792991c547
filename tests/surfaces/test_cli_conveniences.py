"""The command line's conveniences: `simulate -d`, an idempotency key used again answered
`already applied`, "did you mean" for a mistyped definition, event or state, and shell
completion."""

from __future__ import annotations

import json
import subprocess

from turnout_processes import DEFINITIONS, run_together, run_turnout, turnout_command, turnout_env

DOOR = str(DEFINITIONS / "door.yaml")


def deployed_door(database: str) -> str:
    deployed = run_turnout("deploy", DOOR, database=database)
    assert deployed.returncode == 0, deployed.stderr
    started = run_turnout("start", "surface_door", "-d", '{"n": 1}', "--json", database=database)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["context"] == {"n": 1}
    return str(json.loads(started.stdout)["id"])


def test_simulate_takes_its_data_with_d_as_start_does() -> None:
    short, long = run_together(
        ["simulate", DOOR, "-e", "open", "-d", '{"n": 1}', "--json"],
        ["simulate", DOOR, "-e", "open", "--data", '{"n": 1}', "--json"],
    )
    assert json.loads(short.stdout) == json.loads(long.stdout), short.stderr
    assert json.loads(short.stdout)["context"] == {"n": 1}
    assert json.loads(short.stdout)["state"] == "opened"
    bad = run_turnout("simulate", DOOR, "-d", "[1]")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --data must be a JSON object"


def test_an_idempotency_key_used_again_is_reported_already_applied_with_exit_0(
    sqlite_db: str,
) -> None:
    instance_id = deployed_door(sqlite_db)
    first = run_turnout("send", instance_id, "open", "--idempotency-key", "k1", database=sqlite_db)
    assert first.returncode == 0, first.stderr
    assert "already applied" not in first.stdout and "state: opened" in first.stdout
    again = run_turnout("send", instance_id, "open", "--idempotency-key", "k1", database=sqlite_db)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == "already applied: idempotency key 'k1' (nothing changed)"
    assert lines[1].startswith(instance_id) and "state: opened" in again.stdout
    as_json = run_turnout(
        "send", instance_id, "open", "--idempotency-key", "k1", "--json", database=sqlite_db
    )
    shown = json.loads(as_json.stdout)
    assert shown["already_applied"] is True and shown["revision"] == 2
    fresh = run_turnout(
        "send", instance_id, "close", "--idempotency-key", "k2", "--json", database=sqlite_db
    )
    assert json.loads(fresh.stdout)["already_applied"] is False
    rejected = run_turnout(
        "send", instance_id, "unlock", "--idempotency-key", "k3", database=sqlite_db
    )
    assert rejected.returncode == 1 and "rejected in state 'closed'" in rejected.stderr


def test_a_mistyped_definition_event_or_state_gets_a_did_you_mean(sqlite_db: str) -> None:
    instance_id = deployed_door(sqlite_db)
    definition, event, state, simulated = run_together(
        ["start", "surface_dor"],
        ["send", instance_id, "opne"],
        ["reset", instance_id, "lockd", "--reason", "test"],
        ["simulate", DOOR, "-e", "lokc"],
        database=sqlite_db,
    )
    assert definition.returncode == 1
    assert definition.stderr.strip() == (
        "error: no definition 'surface_dor' is deployed; did you mean 'surface_door'?"
    )
    assert event.returncode == 1
    assert event.stderr.strip().endswith("it accepts: open, lock; did you mean 'open'?")
    assert state.returncode == 2 and state.stderr.strip().endswith("did you mean 'locked'?")
    assert simulated.returncode == 1 and "did you mean 'lock'?" in simulated.stderr
    listed = run_turnout("list", "--definition", "surface_dorr", "--json", database=sqlite_db)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert listed.stderr.strip() == (
        "warning: no definition 'surface_dorr' is deployed; did you mean 'surface_door'?"
    )
    far = run_turnout("start", "zzz", database=sqlite_db)
    assert far.stderr.strip() == "error: no definition 'zzz' is deployed"


def test_shell_completion_is_offered_and_completes_commands() -> None:
    # --show-completion prints the script of the shell it runs in: here, bash (kept as the
    # parent process by a command after it, which bash does not replace by `turnout`).
    shown = subprocess.run(
        ["bash", "-c", f"'{turnout_command()}' --show-completion; exit $?"],
        env=turnout_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_TURNOUT_COMPLETE=complete_bash" in shown.stdout
    env = turnout_env(_TURNOUT_COMPLETE="complete_bash", COMP_WORDS="turnout wat", COMP_CWORD="1")
    completed = subprocess.run(
        [turnout_command()], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.stdout.split() == ["watch"], completed.stderr
    # The language commands run without the app, yet their options complete too.
    for words, offered in (
        ("turnout validate --", {"--json", "--help"}),
        ("turnout simulate --e", {"--event"}),
    ):
        env = turnout_env(_TURNOUT_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD="2")
        completed = subprocess.run(
            [turnout_command()], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert set(completed.stdout.split()) == offered, (words, completed.stderr)
    help_text = run_turnout("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
