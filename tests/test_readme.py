"""The README as a newcomer reads it: every relative link and picture leads to a file of the
repository (and a linked heading exists there), nothing sends the reader outside the
repository, the quick start is the two commands `make demo` and `make test`, and the first
workflow it shows runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """A heading's anchor as the documentation site and repository pages make it."""
    text = re.sub(r"[`*]", "", heading)
    text = unicodedata.normalize("NFKD", text)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_every_relative_link_of_the_readme_resolves_inside_the_repository() -> None:
    broken = []
    for target in relative_links(README):
        path, _, anchor = target.partition("#")
        resolved = (ROOT / path).resolve() if path else README
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert relative_links(README), "the README links to its guide"
    assert not broken, "\n".join(broken)


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [command for command in commands if command] == ["make demo", "make test"]


def test_readme_first_workflow_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A first workflow", 1)[1].split("\n## ", 1)[0]
    definition = re.search(r"```yaml\n(.*?)```", section, re.S)
    program = re.search(r"```python\n(.*?)```", section, re.S)
    assert definition is not None and program is not None
    (tmp_path / "approval.yaml").write_text(definition.group(1))
    (tmp_path / "first.py").write_text(program.group(1))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("TURNOUT_DB", None)
    done = subprocess.run(
        [sys.executable, "first.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["succeeded"]
