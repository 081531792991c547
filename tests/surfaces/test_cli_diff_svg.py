"""`turnout diff --svg FILE` and `turnout diff NAME A [B]` as a user runs them: the picture of
both versions written beside the usual summary, with the instances of the older version on
its states when it is deployed, and diff's exit statuses kept (0 none, 1 changes, 2 trouble)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import postgres_schema
from turnout_processes import run_together, run_turnout

import statemachines
from engine import Engine

DIFFS = Path(__file__).parent.parent / "statemachines" / "diffs"
SHOP_V1 = str(DIFFS / "shop_v1.yaml")
SHOP_V2 = str(DIFFS / "shop_v2.yaml")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/turnout.db"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def shop(database: str) -> str:
    """Both versions of the shop deployed: two instances of version 1 left in `labelled`
    (a state version 2 removes), one paying. Gives the database."""
    with Engine(database) as engine:
        engine.deploy(SHOP_V1)
        ids = [engine.start("shop", {"amount": 5}).id for _ in range(3)]
        for claimed in engine.claim_tasks(["payments.charge"], limit=10):
            if claimed.instance_id != ids[0]:
                engine.complete_task(claimed.id, None, {"ok": True})
        for claimed in engine.claim_tasks(["warehouse.pack"], limit=10):
            engine.complete_task(claimed.id, None, {})
        engine.deploy(SHOP_V2)
    return database


def svg_text(path: Path) -> str:
    return path.read_text().replace("&#45;", "-")


def test_two_files_write_the_picture_and_keep_the_summary_and_status(tmp_path: Path) -> None:
    picture = tmp_path / "shop.svg"
    result = run_turnout("diff", SHOP_V1, SHOP_V2, "--svg", str(picture))
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == expected.summary() + "\n"
    assert result.stderr.strip() == f"wrote {picture}"
    svg = svg_text(picture)
    assert "shop_v1.yaml → shop_v2.yaml" in svg
    for css in ("diff-added", "diff-removed", "diff-changed", "diff-unchanged", "diff-legend"):
        assert css in svg
    assert "running" not in svg  # files have no instances
    same = run_turnout("diff", SHOP_V1, SHOP_V1, "--svg", str(tmp_path / "same.svg"))
    assert same.returncode == 0 and same.stdout.strip() == "no changes", same.stderr
    assert "diff-added" not in svg_text(tmp_path / "same.svg").split('id="diff-legend"')[0]


def test_name_and_two_versions_draw_the_instances_of_the_older(shop: str, tmp_path: Path) -> None:
    both, latest, same = run_together(
        ["diff", "shop", "1", "2", "--svg", str(tmp_path / "both.svg")],
        ["diff", "shop", "1", "--svg", str(tmp_path / "latest.svg"), "--json"],
        ["diff", "shop", "2", "2"],
        database=shop,
    )
    assert both.returncode == 1, both.stderr
    assert "- state shipping.labelled" in both.stdout.splitlines()
    svg = svg_text(tmp_path / "both.svg")
    assert "shop: version 1 → version 2" in svg
    assert "⚠ 2 running in a removed state" in svg
    assert "1 running" in svg  # the one still paying
    assert latest.returncode == 1, latest.stderr
    assert '"shipping.labelled"' in latest.stdout
    assert svg_text(tmp_path / "latest.svg") == svg
    assert same.returncode == 0 and same.stdout.strip() == "no changes", same.stderr


def test_a_deployed_old_side_brings_its_instances_into_the_picture(
    shop: str, tmp_path: Path
) -> None:
    at, from_file = run_together(
        ["diff", "shop@1", SHOP_V2, "--svg", str(tmp_path / "at.svg")],
        ["diff", SHOP_V1, "shop@2", "--svg", str(tmp_path / "file.svg")],
        database=shop,
    )
    assert at.returncode == 1 and from_file.returncode == 1, (at.stderr, from_file.stderr)
    assert "shop@1 → shop_v2.yaml" in svg_text(tmp_path / "at.svg")
    assert "2 running in a removed state" in svg_text(tmp_path / "at.svg")
    assert "running" not in svg_text(tmp_path / "file.svg")


def test_bad_versions_and_an_unwritable_picture_exit_2_with_a_message(
    shop: str, tmp_path: Path
) -> None:
    word, missing, unwritable = run_together(
        ["diff", "shop", "1", "two"],
        ["diff", "shop", "9"],
        ["diff", "shop", "1", "2", "--svg", str(tmp_path / "no" / "such" / "dir.svg")],
        database=shop,
    )
    for result in (word, missing, unwritable):
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
    assert "NAME A [B]" in word.stderr
    assert "'shop' version 9" in missing.stderr
    assert "dir.svg" in unwritable.stderr
