"""A job's events_url, through gunicorn as compose runs it: a link that opens the job's event
stream with no header at all, that opens no other job's stream, that no other route accepts,
and that says so once it has expired."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from itsdangerous.timed import TimestampSigner

from tests.support import Api
from writeback import bootstrap
from writeback.domain.accounts import Principal

pytestmark = pytest.mark.integration
STREAM = {"Accept": "text/event-stream"}


def _events(url: str, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with requests.get(url, headers={**STREAM, **(headers or {})}, stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        text = r.text
    blocks = [block.splitlines() for block in text.split("\n\n") if block.startswith("id:")]
    return [(lines[1].removeprefix("event: "), lines[2].removeprefix("data: ")) for lines in blocks]


def test_the_events_url_opens_its_jobs_stream_without_a_header(
    gunicorn_api: tuple[str, Api],
) -> None:
    url, api = gunicorn_api
    accepted = api.start(api.session())
    events_url = accepted["events_url"]
    assert events_url.startswith(f"{url}/api/v1/jobs/{accepted['job_id']}/events?access=")
    assert api.token_header["Authorization"].split()[1] not in events_url
    received = _events(events_url)
    assert [json.loads(data)["event"] for _, data in received][-1] == "succeeded"
    # Every job answer carries one, and it works as well.
    job = api.get(f"/jobs/{accepted['job_id']}")
    assert _events(job["events_url"]) == received
    # Reconnecting as a browser does: the same URL and Last-Event-ID.
    last = received[-2][1]
    resumed = _events(events_url, {"Last-Event-ID": str(json.loads(last)["id"])})
    assert resumed == received[-1:]


def test_the_credential_opens_no_other_job_and_no_other_route(
    gunicorn_api: tuple[str, Api],
) -> None:
    url, api = gunicorn_api
    session_ids = api.session(), api.session()
    first, second = (api.start(session_id) for session_id in session_ids)
    # Another job in the path: that job does not exist for this credential.
    path_edited = first["events_url"].replace(
        f"/jobs/{first['job_id']}/", f"/jobs/{second['job_id']}/"
    )
    refused = requests.get(path_edited, headers=STREAM, timeout=10)
    assert refused.status_code == 404
    assert refused.headers["Content-Type"] == "application/problem+json"
    # The job in the credential edited too: the signature no longer holds.
    all_edited = first["events_url"].replace(first["job_id"], second["job_id"])
    assert requests.get(all_edited, headers=STREAM, timeout=10).status_code == 401
    access = parse_qs(urlsplit(first["events_url"]).query)["access"][0]
    for path in (
        f"/api/v1/jobs/{first['job_id']}",
        "/api/v1/jobs",
        f"/api/v1/ai-sessions/{session_ids[0]}",
    ):
        answer = requests.get(f"{url}{path}", params={"access": access}, timeout=10)
        assert answer.status_code == 401, path
    for accepted in (first, second):
        api.wait_job(accepted["job_id"])


def test_an_expired_events_url_answers_401_telling_the_page_to_fetch_the_job_again(
    gunicorn_api: tuple[str, Api], container: bootstrap.Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, api = gunicorn_api
    accepted = api.start(api.session())
    job = api.wait_job(accepted["job_id"])
    with monkeypatch.context() as an_hour_ago:
        an_hour_ago.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3600)
        stale = container.stream_credentials.issue(Principal(0, 0), job["id"])  # refused first
    expired = requests.get(
        f"{url}/api/v1/jobs/{job['id']}/events",
        params={"access": stale},
        headers=STREAM,
        timeout=10,
    )
    assert expired.status_code == 401
    assert expired.headers["Content-Type"] == "application/problem+json"
    assert expired.json()["code"] == "events_url_expired"
    # A fresh GET (no If-None-Match) hands out a fresh URL.
    assert _events(api.get(f"/jobs/{job['id']}")["events_url"])[-1][0] == "job_event"


def test_a_bad_credential_is_401_not_a_stream(gunicorn_api: tuple[str, Api]) -> None:
    url, api = gunicorn_api
    job_id = api.start(api.session())["job_id"]
    answer = requests.get(
        f"{url}/api/v1/jobs/{job_id}/events", params={"access": "x.y.z"}, headers=STREAM, timeout=10
    )
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    api.wait_job(job_id)
