"""A stopped beat holds every waiting job: readiness and metrics say when it last swept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.support import Process, create_database, deployment_env, drop_database, wait_until
from writeback import bootstrap
from writeback.api import create_app
from writeback.config import load_settings

pytestmark = pytest.mark.integration


def _since_sweep(client: FlaskClient) -> float:
    metrics = client.get("/metrics").get_data(as_text=True)
    found = re.search(r"^writeback_seconds_since_sweep (\S+)$", metrics, re.MULTILINE)
    assert found is not None, metrics
    return float(found.group(1))


def test_a_sweeping_beat_shows_in_readiness_and_metrics(
    flask_client: FlaskClient, worker: Process
) -> None:
    """The suite's worker runs beat, which sweeps every second."""

    def swept() -> bool:
        scheduler = flask_client.get("/readyz").get_json()["scheduler"]
        return bool(scheduler["state"] == "ok" and scheduler["seconds_since_sweep"] < 5)

    wait_until(swept, timeout=30)
    assert 0 <= _since_sweep(flask_client) < 10


@pytest.fixture
def database_without_beat() -> Iterator[str]:
    url = create_database("wb_nobeat")
    yield url
    drop_database(url)


def test_a_beat_that_never_swept_or_stopped_is_reported_not_hidden(
    database_without_beat: str, tmp_path: Path
) -> None:
    url = database_without_beat
    container = bootstrap.build(load_settings(deployment_env(url, "wb-nobeat", tmp_path)))
    without_beat = create_app(container).test_client()
    ready = without_beat.get("/readyz")
    assert ready.status_code == 200  # posts are still taken: they wait for the sweep
    assert ready.get_json()["scheduler"] == {"state": "never", "seconds_since_sweep": None}
    assert _since_sweep(without_beat) == float("inf")

    with container.engine.begin() as conn:  # beat swept a minute ago, then stopped
        conn.execute(sa.text("UPDATE sweeps SET at = now() - interval '60 seconds'"))
    scheduler = without_beat.get("/readyz").get_json()["scheduler"]
    assert scheduler["state"] == "stale" and scheduler["seconds_since_sweep"] >= 60
    assert _since_sweep(without_beat) >= 60
    container.close()
