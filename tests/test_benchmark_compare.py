"""`python -m benchmarks.compare`: the sections it finds, the table it prints and its exit
status, over figures made up here and over two small trees of made-up sections (no real
benchmark runs in the tests)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import compare
from benchmarks.run_section import arguments, figures_of, sections

ROOT = Path(__file__).resolve().parent.parent


def _figure(name: str, value: float | None, unit: str = "events/s") -> dict[str, Any]:
    return {"name": name, "unit": unit, "value": value, "baseline_name": "b", "baseline": 1.0}


def test_the_sections_are_what_make_bench_runs_in_its_order() -> None:
    import benchmarks.__main__ as bench

    found = sections((ROOT / "benchmarks" / "__main__.py").read_text())
    assert found[0] == "events_on_sqlite"
    assert found[-1] == "nats_rabbitmq_relay_figures"
    assert {"contention_on_postgres", "scale_figures", "send_many_on_postgres"} <= set(found)
    assert len(found) == len(set(found))
    assert all(callable(getattr(bench, name)) for name in found)


def test_a_section_is_a_call_given_the_working_directory_or_the_database() -> None:
    source = """
def main():
    console = Console()
    figures.extend(first(workdir))
    if postgres:
        figures.append(second(postgres))
    figures.extend(first(workdir))
    third(workdir, postgres, figures[0].value)
    Path(tmp)
"""
    assert sections(source) == ["first", "second", "third"]


def test_figures_are_taken_from_whatever_a_section_returns() -> None:
    from benchmarks.figures import Figure

    one = Figure("a", "ms", 2.0, "b", 3.0, "reported")
    assert figures_of(one)[0] == {
        "name": "a",
        "unit": "ms",
        "value": 2.0,
        "baseline_name": "b",
        "baseline": 3.0,
        "baseline_unit": "",
    }
    assert [f["name"] for f in figures_of([one, one])] == ["a", "a"]
    assert [f["name"] for f in figures_of(([one], ["NATS"]))] == ["a"]


def test_a_section_gets_its_arguments_by_their_names(tmp_path: Path) -> None:
    def section(workdir: Path, url: str, send_rate: float, count: int = 5) -> None: ...

    given = arguments(section, tmp_path, "postgresql://here")
    assert given[:2] == [tmp_path, "postgresql://here"] and math.isnan(given[2])
    with pytest.raises(SystemExit, match="PostgreSQL"):
        arguments(section, tmp_path, None)


def test_the_table_gives_medians_and_flags_what_got_worse_either_way() -> None:
    runs = {
        "base": [
            [_figure("send", 100), _figure("send", 100), _figure("draw", 1.0, "s")],
            [_figure("send", 110), _figure("draw", 1.0, "s"), _figure("list", 10, "ms")],
            [_figure("send", 90), _figure("draw", 1.0, "s"), _figure("list", 10, "ms")],
        ],
        "now": [
            [_figure("send", 80), _figure("draw", 0.9, "s"), _figure("list", 12, "ms")],
            [_figure("send", 85), _figure("draw", None, "s"), _figure("new", 5)],
            [_figure("send", 90), _figure("list", 9.6, "ms")],
        ],
    }
    rows = {row.name: row for row in compare.collect(runs)}
    assert list(rows) == ["send", "draw", "list", "new"]
    assert rows["send"].base == [100, 110, 90]  # one value per run, though two rows show it
    assert rows["send"].ratio == pytest.approx(85 / 100) and rows["send"].worse
    assert rows["draw"].ratio == pytest.approx(1.0 / 0.9) and not rows["draw"].worse
    assert rows["list"].ratio == pytest.approx(10 / 10.8) and rows["list"].worse
    assert rows["new"].ratio is None and not rows["new"].worse
    lines = compare.table(list(rows.values()))
    assert lines[0] == ["figure", "base", "now", "ratio", ""]
    assert lines[1] == [
        "send (events/s, higher is better)",
        "100",
        "85",
        "0.850x",
        "WORSE (< 0.95x)",
    ]
    assert lines[2][1:] == ["1", "0.9", "1.111x", ""]
    assert lines[4][1:4] == ["-", "5", "-"]
    assert compare.exit_status(list(rows.values()), []) == 1
    assert compare.exit_status([rows["draw"], rows["new"]], []) == 0
    assert compare.exit_status([rows["draw"]], ["a section failed"]) == 2


def _tree(path: Path, rate: float, extra: str = "") -> Path:
    (path / "benchmarks").mkdir(parents=True)
    (path / "benchmarks" / "__init__.py").write_text("")
    (path / "benchmarks" / "__main__.py").write_text(
        "from types import SimpleNamespace as F\n"
        "def tiny(workdir):\n"
        "    assert workdir.is_dir()\n"
        f"    return [F(name='tiny', unit='events/s', value={rate}, baseline_name='b',"
        " baseline=1.0, baseline_unit='')]\n"
        f"{extra}"
        "def main():\n"
        "    tiny(workdir)\n"
        "    broken(workdir)\n"
    )
    return path


def test_sections_run_in_each_tree_in_turn(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base", 100.0, "def broken(workdir):\n    return []\n")
    now = _tree(tmp_path / "now", 90.0, "def broken(workdir):\n    raise RuntimeError('no')\n")

    rows, errors = compare.compare(base, now, ["tiny", "broken"], 2)

    assert [(row.name, row.base, row.now) for row in rows] == [("tiny", [100, 100], [90, 90])]
    assert rows[0].worse
    assert len(errors) == 1 and "broken failed" in errors[0] and "RuntimeError" in errors[0]


def test_a_section_missing_from_a_tree_is_left_out(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base", 100.0)
    now = _tree(tmp_path / "now", 90.0, "def broken(workdir):\n    return []\n")
    assert compare.compare(base, now, ["broken"], 1) == ([], [])


def test_unknown_revisions_sections_and_repeats_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert compare.main(["--base", "no-such-revision-here"]) == 2
    assert "no-such-revision-here" in capsys.readouterr().out
    assert compare.main(["--base", "HEAD", "--only", "no_such_section"]) == 2
    assert "unknown sections: no_such_section" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        compare.main(["--base", "HEAD", "--repeat", "0"])
    assert refused.value.code == 2
