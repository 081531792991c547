"""`turnout diagram FILE` and `python -m diagrams.examples OUTDIR`, as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import statemachines
from diagrams.examples import main as examples_main
from engine.cli import app

HERE = Path(__file__).parent
ORDER = statemachines.EXAMPLES / "order_fulfillment.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_diagram_writes_svg_to_the_file_named_by_o(tmp_path: Path) -> None:
    out = tmp_path / "order.svg"
    code, _, stderr = run("diagram", str(ORDER), "-o", str(out))
    assert code == 0, stderr
    assert (
        out.read_bytes().startswith(b"<?xml") and b"state&#45;validate_payment" in out.read_bytes()
    )
    assert str(out) in stderr


def test_diagram_prints_mermaid_or_dot_on_stdout() -> None:
    code, stdout, _ = run("diagram", str(ORDER), "--format", "mermaid")
    assert code == 0 and stdout.startswith("stateDiagram-v2")
    code, stdout, _ = run("diagram", str(ORDER), "--format", "dot", "--direction", "TB")
    assert code == 0 and "rankdir=TB" in stdout


def test_diagram_takes_the_format_from_the_file_suffix(tmp_path: Path) -> None:
    out = tmp_path / "order.mmd"
    assert run("diagram", str(ORDER), "-o", str(out))[0] == 0
    assert out.read_text().startswith("stateDiagram-v2")


def test_diagram_rejects_an_unknown_format_as_bad_usage() -> None:
    code, _, stderr = run("diagram", str(ORDER), "--format", "gif")
    assert code == 2 and "svg, png, pdf, dot, mermaid" in stderr


def test_diagram_of_an_invalid_definition_lists_its_problems(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ninitial: nowhere\nstates: {a: {final: true}}\n")
    code, _, stderr = run("diagram", str(broken))
    assert code == 2 and "broken.yaml:" in stderr


def test_diagram_as_png_without_dot_fails_with_the_install_hint(
    tmp_path: Path, no_dot: None
) -> None:
    code, _, stderr = run("diagram", str(ORDER), "-o", str(tmp_path / "order.png"))
    assert code == 1
    assert "apt-get install graphviz" in stderr and "brew install graphviz" in stderr
    assert not (tmp_path / "order.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs the system Graphviz `dot`")
def test_diagram_as_png_with_dot(tmp_path: Path) -> None:
    out = tmp_path / "order.png"
    assert run("diagram", str(ORDER), "-o", str(out))[0] == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_examples_module_writes_one_svg_per_bundled_example(tmp_path: Path, no_dot: None) -> None:
    assert examples_main([str(tmp_path / "out")]) == 0
    names = sorted(path.stem for path in (tmp_path / "out").glob("*.svg"))
    expected = sorted(statemachines.load(path).name for path in statemachines.examples())
    assert names == expected
