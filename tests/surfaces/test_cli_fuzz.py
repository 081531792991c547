"""Random text as the CLI's `--data`: every answer is an exit status of SPEC 5 with one line
on stderr, never a traceback. The CLI runs in process here, to try many inputs quickly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine import Engine
from engine.cli import app

DOOR = Path(__file__).parent / "definitions" / "door.yaml"
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSONISH = st.text(alphabet='{}[]":,0123456789.-+eEtrufalsn \\x', max_size=40)


@pytest.fixture(scope="module")
def door_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/turnout.db"
    with Engine(url) as engine:
        name = engine.deploy(DOOR).name
    yield url, name


@FUZZ
@given(data=st.text(max_size=60) | JSONISH)
def test_any_data_text_gives_an_exit_status_and_one_line_never_a_traceback(
    door_db: tuple[str, str], data: str
) -> None:
    url, name = door_db
    result = CliRunner().invoke(app, ["start", name, "--data", data, "--db", url, "--json"])
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code != 0:
        assert result.output.strip().count("\n") == 0, result.output
