"""The RabbitMQ override and the metrics folder of the compose stack, checked by reading the
files (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "worker", "beat", "flower")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())  # type: ignore[no-any-return]


def test_the_rabbitmq_override_moves_every_app_process_to_a_healthy_rabbitmq() -> None:
    override = _load("docker-compose.rabbitmq.yml")["services"]
    assert override["rabbitmq"]["healthcheck"]["test"]
    conf = override["rabbitmq"]["volumes"][1].split(":")[0]
    assert "consumer_timeout" in (ROOT / conf).read_text()
    for name in APP_SERVICES:
        broker = override[name]["environment"]["CELERY_BROKER_URL"]
        assert broker.startswith("amqp://writeback:${RABBITMQ_PASSWORD")  # never committed
        assert override[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert "RABBITMQ_PASSWORD" in (ROOT / ".env.example").read_text()


def test_every_app_process_counts_metrics_into_an_empty_folder_of_its_own() -> None:
    services = _load("docker-compose.yml")["services"]
    for name in APP_SERVICES:
        folder = services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        # A tmpfs per container: empty at every start, as multiprocess mode requires.
        assert any(mount.split(":")[0] == folder for mount in services[name]["tmpfs"])
