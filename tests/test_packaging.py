"""The distribution as a user gets it: `python -m build` makes an sdist and a wheel without
setuptools warnings, the wheel carries the dashboard's templates and static files, the bundled
examples and the schema migrations, and installed into a fresh virtual environment it runs
`turnout --version` (the version written once, in pyproject.toml) and `turnout demo`.

One build and one install serve every test of the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def quiet_environment() -> dict[str, str]:
    """The environment without this checkout on the import path: the fresh venv must run
    the installed wheel, not the source tree."""
    environment = dict(os.environ)
    environment.pop("PYTHONPATH", None)
    environment.pop("TURNOUT_DB", None)
    return environment


class Built:
    """What one `python -m build` run left: its output and the two files."""

    def __init__(self, output: str, wheel: Path, sdist: Path) -> None:
        self.output = output
        self.wheel = wheel
        self.sdist = sdist


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source")
    # Build from a copy of the tracked files, as a fresh clone would: no build/ or egg-info
    # left in the checkout, nothing untracked shipped.
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        origin = ROOT / name.decode()
        if origin.is_file():
            target = source / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(origin.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        env=quiet_environment(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return Built(done.stdout + done.stderr, wheels[0], sdists[0])


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `bin` folder of a fresh venv with the wheel installed (dependencies from the
    configured package index)."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(built.wheel)],
        capture_output=True,
        text=True,
        env=quiet_environment(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield home / "bin"


def test_build_makes_wheel_and_sdist_named_by_the_one_version(built: Built) -> None:
    assert built.wheel.name == f"turnout-{VERSION}-py3-none-any.whl"
    assert built.sdist.name == f"turnout-{VERSION}.tar.gz"


def test_build_prints_no_setuptools_warning(built: Built) -> None:
    warnings = [
        line
        for line in built.output.splitlines()
        if "WARNING" in line or "would be ignored" in line or "Deprecat" in line
    ]
    assert not warnings, "\n".join(warnings)


def test_wheel_carries_templates_static_files_examples_and_migrations(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    expected = {
        *(f"engine/api/templates/{p.name}" for p in (ROOT / "engine/api/templates").iterdir()),
        *(f"engine/api/static/{p.name}" for p in (ROOT / "engine/api/static").iterdir()),
        *(f"statemachines/examples/{p.name}" for p in (ROOT / "statemachines/examples").iterdir()),
        *(
            f"engine/schema/versions/{p.name}"
            for p in (ROOT / "engine/schema/versions").glob("*.py")
        ),
        "engine/schema/env.py",
        "engine/schema/script.py.mako",
    }
    expected = {name for name in expected if "__pycache__" not in name}
    assert expected - names == set()


def test_installed_turnout_reports_its_version(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(installed / "turnout"), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=quiet_environment(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"turnout {VERSION}"


def test_installed_turnout_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(installed / "turnout"), "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=quiet_environment(),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "turnout-demo").rglob("*.svg")), done.stdout
