"""docker-compose.yml cannot run here (no Docker engine): check what it promises by reading it,
and with `docker compose config` where a client is installed. The e2e tests run its commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "worker", "beat", "flower")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_the_stack_has_every_process(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "migrate", *APP_SERVICES}


def test_app_services_share_one_definition_through_the_anchor(compose: dict[str, Any]) -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    assert "x-app: &app" in raw and raw.count("<<: *app\n") == 5
    services = compose["services"]
    for name in ("migrate", *APP_SERVICES):
        assert services[name]["image"] == "psa-writeback:latest"
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/0"


def test_services_wait_for_healthy_dependencies_and_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", *APP_SERVICES):
        assert services[name]["healthcheck"]["test"], name
    for name in APP_SERVICES:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert services["migrate"]["command"] == ["writeback", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|KEY|TOKEN|AUTH", key):
                assert str(value).startswith("${"), (name, key)
        assert "basic-auth" not in " ".join(service.get("command") or [])  # not in `ps` either
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) >= {"POSTGRES_PASSWORD", "WRITEBACK_SECRET_KEYS", "FLOWER_BASIC_AUTH"}
    assert all(value in ("", "change-me") for value in example.values())
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_flower_is_started_through_the_guard_that_demands_auth(compose: dict[str, Any]) -> None:
    assert compose["services"]["flower"]["command"][:2] == ["writeback", "flower"]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no docker compose client on this machine; the file was checked by parsing")
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    done = subprocess.run(
        [docker, "compose", "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
