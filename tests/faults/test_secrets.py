"""Canary credentials: a connection whose credentials are unique strings goes through success,
rejection and a connection check; then the canaries are searched for in every log the stack's
processes wrote, every response body the API sent, and Flower's API."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.conftest import FLOWER_AUTH
from tests.faults.conftest import Deployment
from tests.support import Api

pytestmark = pytest.mark.faults

# The simulator's seeded API member: the only credentials it accepts.
ACCEPTED = {"public_key": "pub-key", "private_key": "priv-key"}


class RecordingApi(Api):
    """The HTTP API, keeping every response body it received."""

    def __init__(self, url: str, token: str) -> None:
        self.bodies: list[str] = []
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"

        def send(method: str, path: str, body: Any) -> tuple[int, Any]:
            response = http.request(method, f"{url}{path}", json=body, timeout=10)
            self.bodies.append(response.text)
            return response.status_code, response.json()

        super().__init__(send, token)


def _connect(api: Api, url: str, public_key: str, private_key: str, client_id: str) -> int:
    credentials = {"public_key": public_key, "private_key": private_key, "client_id": client_id}
    body = {"provider": "connectwise", "site_url": url, "company_id": "ACME"}
    return int(api.post("/psa-connections", {**body, "credentials": credentials}, 201)["id"])


def _flower(d: Deployment) -> list[str]:
    auth = tuple(FLOWER_AUTH.split(":", 1))
    answers = []
    for path in ("/api/tasks", "/api/workers", "/api/queues/length"):
        response = requests.get(f"{d.stack.flower_url}{path}", auth=auth, timeout=10)  # type: ignore[arg-type]
        answers.append(response.text)
    return answers


def test_canary_credentials_appear_in_no_log_no_response_and_not_in_flower(
    deployment: Deployment,
) -> None:
    d = deployment
    account_token = d.client.token_header["Authorization"].removeprefix("Bearer ")
    api = RecordingApi(d.stack.url, account_token)
    tag = uuid.uuid4().hex[:12]
    canary_public, canary_private, canary_client = (
        f"canarypub{tag}",
        f"canarypriv{tag}",
        f"canary-client-{tag}",
    )
    # Accepted by the PSA (the seeded key pair, the client id a canary) and refused by it.
    good = _connect(api, d.sim.url, ACCEPTED["public_key"], ACCEPTED["private_key"], canary_client)
    refused = _connect(api, d.sim.url, canary_public, canary_private, canary_client)
    for connection_id in (good, refused):
        api.get(f"/psa-connections/{connection_id}")
        api.post(f"/psa-connections/{connection_id}/test", expect=200)
    jobs = []
    for connection_id in (good, refused):
        for kind in ("resolve", "escalate"):
            ticket = d.sim.new_ticket()
            jobs.append(api.start(api.session(connection_id, ticket), kind)["job_id"])
    finished = [api.wait_job(job_id, timeout=60) for job_id in jobs]
    for job in finished:
        api.get(f"/jobs/{job['id']}/events")
    api.get("/jobs?limit=50")
    assert {j["state"] for j in finished} == {"succeeded", "failed"}, finished

    canaries = {
        "the private key": canary_private,
        "the public key": canary_public,
        "the client id": canary_client,
        "the seeded private key": ACCEPTED["private_key"],
        "a Basic header": base64.b64encode(f"ACME+{canary_public}:{canary_private}".encode())
        .decode()
        .rstrip("="),
    }
    places = {f"log {path.name}": path.read_text(errors="replace") for path in d.logs.glob("*.log")}
    places |= {f"response {n}": body for n, body in enumerate(api.bodies)}
    places |= {f"flower {n}": body for n, body in enumerate(_flower(d))}
    leaks = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, secret in canaries.items()
        if secret in text
    ]
    assert not leaks, "; ".join(leaks)
