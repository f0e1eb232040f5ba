"""The lock files pin every dependency pyproject.toml asks for, at a version it allows, with
hashes. (That they install on a clean checkout is what CI's `make install` does every run.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.MULTILINE)


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def _wanted(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    raw = list(project["dependencies"])
    for extra in extras:
        raw += project["optional-dependencies"][extra]
    return [Requirement(line) for line in raw]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-dev.lock", ("test",))]
)
def test_every_dependency_is_pinned_at_an_allowed_version(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = _pins(lock)
    for requirement in _wanted(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is missing from {lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, pyproject.toml wants {requirement}: run `make lock`"
        )


def test_every_pin_carries_a_hash() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        blocks = re.split(r"\n(?=\S)", (ROOT / lock).read_text())
        pinned = [block for block in blocks if PIN.match(block)]
        assert pinned and all("--hash=sha256:" in block for block in pinned)
