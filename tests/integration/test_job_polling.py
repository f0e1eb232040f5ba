"""Cheap polling and live progress, through gunicorn as compose runs it, with a real worker:
ETag + 304 from the version the worker publishes in Redis, another account's job 404 even with
its ETag, a poll-after hint for in-flight jobs, and the job's events as Server-Sent Events."""

from __future__ import annotations

import json

import pytest
import requests

from tests.support import Api

pytestmark = pytest.mark.integration


def _sse(url: str, token: str, last_id: int | None = None) -> list[tuple[str, dict[str, object]]]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    received, event, data = [], "", ""
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                received.append((event, json.loads(data)))
                event = ""
    return received


def test_etag_304_and_another_accounts_job_stays_404(
    gunicorn_api: tuple[str, Api], container: object
) -> None:
    url, api = gunicorn_api
    token = api.token_header["Authorization"].split()[1]
    job_id = api.start(api.session())["job_id"]
    api.wait_job(job_id)
    first = requests.get(f"{url}/api/v1/jobs/{job_id}", headers=api.token_header, timeout=10)
    etag = first.headers["ETag"]
    assert first.json()["poll_after_ms"] is None and "Retry-After" not in first.headers
    again = requests.get(
        f"{url}/api/v1/jobs/{job_id}",
        headers={**api.token_header, "If-None-Match": etag},
        timeout=10,
    )
    assert again.status_code == 304 and again.headers["ETag"] == etag
    from tests.integration.conftest import http_sender

    other = container.accounts.create_account("other")
    stranger = requests.get(
        f"{url}/api/v1/jobs/{job_id}",
        headers={"Authorization": f"Bearer {other.token}", "If-None-Match": etag},
        timeout=10,
    )
    assert stranger.status_code == 404
    assert http_sender(url, token)("GET", f"/api/v1/jobs/{job_id}", None)[0] == 200


def test_in_flight_jobs_carry_a_poll_hint_and_the_stream_follows_to_the_end(
    gunicorn_api: tuple[str, Api],
) -> None:
    url, api = gunicorn_api
    token = api.token_header["Authorization"].split()[1]
    job_id = api.start(api.session())["job_id"]
    polled = requests.get(f"{url}/api/v1/jobs/{job_id}", headers=api.token_header, timeout=10)
    if polled.json()["state"] in ("queued", "running", "retrying"):
        assert int(polled.headers["Retry-After"]) >= 1
        assert polled.json()["poll_after_ms"] >= 1000
    events = _sse(f"{url}/api/v1/jobs/{job_id}/events", token)
    names = [data["event"] for kind, data in events if kind == "job_event"]
    assert names[0] == "created" and names[-1] == "succeeded"
    assert events[-1][0] == "end"
    # A reconnect with Last-Event-ID gets only what came after it.
    ids = [data["id"] for kind, data in events if kind == "job_event"]
    resumed = _sse(f"{url}/api/v1/jobs/{job_id}/events", token, last_id=ids[-2])
    assert [data["id"] for kind, data in resumed if kind == "job_event"] == ids[-1:]
    # Without the Accept header the route still answers JSON, as API.md says.
    listed = requests.get(
        f"{url}/api/v1/jobs/{job_id}/events", headers=api.token_header, timeout=10
    )
    assert [e["event"] for e in listed.json()["events"]] == names
