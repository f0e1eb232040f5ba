"""The benchmarks run at tiny sizes so they do not rot. No timing is asserted here: the figures
are read in `make bench` output and docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_every_figure_is_measured_beside_its_baseline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [
        row
        for line in done.stderr.splitlines()
        if line.startswith("[{")
        for row in json.loads(line)
    ]
    names = {row["name"].split(" ", 1)[0] for row in figures}
    expected = {"1.", "2.", "3a.", "3b.", "3c.", "4a.", "4b.", "5.", "6.", "7.", "8a.", "8b."}
    assert expected <= names
    for row in figures:
        assert row["value"] > 0 and row["baseline"] > 0 and math.isfinite(row["ratio"]), row
    assert len(done.stdout.splitlines()) == len(figures)  # one printed line per figure
