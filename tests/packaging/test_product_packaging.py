"""The product's wheel (what `pip install .` and the Docker image install) holds the product
only: the simulators are a separate development package, and `writeback dev` says so when they
are missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]


def test_the_production_wheel_contains_no_simulator(tmp_path: Path) -> None:
    # Built from a copy of exactly what the Dockerfile copies, so the checkout stays clean.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("psa_writeback-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "writeback/adapters/psa/connectwise.py" in names  # the product is there
    assert "writeback/migrations/versions/0001_initial_schema.py" in names
    assert [n for n in names if "simulator" in n.lower()] == []


def test_writeback_dev_names_what_to_install_when_the_simulators_are_absent() -> None:
    # `sys.modules[name] = None` makes every import of that package fail, as if not installed.
    code = (
        "import sys; sys.modules['writeback_simulators'] = None; "
        "from writeback.cli import main; main(['dev'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "simulators are not installed" in done.stderr
    assert "pip install -e ./simulators" in done.stderr
