"""docs/adding-a-psa-provider.md stays true: every file it names exists, and what it says a
provider needs outside the registry is needed (a provider without a default rate could send
nothing)."""

from __future__ import annotations

import re
from pathlib import Path

from writeback.adapters.psa.budget import DEFAULT_RATES
from writeback.adapters.psa.registry import default_specs

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "adding-a-psa-provider.md"
# Where the guide's relative names live: the repository, the package, the simulators, the tests.
BASES = (
    ROOT,
    ROOT / "src" / "writeback",
    ROOT / "simulators" / "src" / "writeback_simulators",
    ROOT / "tests" / "contract",
)


def test_every_file_the_guide_names_exists() -> None:
    named = {
        name
        for name in re.findall(r"`([\w./-]+\.py|[\w./-]+/)`", GUIDE.read_text())
        if "<" not in name
    }
    missing = [name for name in sorted(named) if not any((b / name).exists() for b in BASES)]
    assert named and missing == []


def test_every_provider_has_a_default_rate() -> None:
    assert set(default_specs()) <= set(DEFAULT_RATES)
