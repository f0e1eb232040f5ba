"""The SSRF guard on the wire: every connection connects to the address that was vetted (no
DNS-rebinding window), and redirects are never followed. Real sockets on loopback; only name
resolution is scripted."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, redirect

from writeback.adapters.psa.http import HttpClient, read_answer
from writeback.adapters.psa.ssrf import AddressVetter, guard_url
from writeback.domain.errors import PsaRejected, SiteUrlRefused
from writeback.domain.site_url import HostPolicy
from writeback_simulators.server import RunningServer, serve

# A name the system resolver does not know: only the vetter's resolver can connect to it.
NAME = "psa.rebind.test"


class ScriptedDns:
    """Answers each lookup with the next address of a script (the last one repeats)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.lookups = 0

    def __call__(self, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        address = self.addresses[min(self.lookups, len(self.addresses) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


HITS: list[str] = []  # paths the target server was asked for


@pytest.fixture(scope="module")
def target() -> Iterator[RunningServer]:
    app = Flask("target")

    @app.route("/<path:path>")
    def answer(path: str) -> Response:
        HITS.append(path)
        return Response('{"ok": true}', mimetype="application/json")

    with serve(app) as server:
        yield server


def test_the_connection_goes_to_the_vetted_address(target: RunningServer) -> None:
    # The operator admits this one name; the system resolver has never heard of it.
    dns = ScriptedDns("127.0.0.1")
    http = HttpClient(timeout=2).pinned(AddressVetter(HostPolicy.parse(NAME), dns))

    response = http.request("GET", f"http://{NAME}:{target.port}/pinned")

    assert response.status_code == 200 and "pinned" in HITS
    assert dns.lookups == 1


def test_a_name_that_rebinds_after_the_check_is_refused_at_connect(target: RunningServer) -> None:
    # First lookup (the check) says public; the next (the connect) says loopback.
    dns = ScriptedDns("93.184.216.34", "127.0.0.1")
    vet = AddressVetter(HostPolicy(), dns)
    guard_url(f"https://{NAME}", vet=vet)  # passes: the address looked public
    http = HttpClient(timeout=2).pinned(vet)

    with pytest.raises(SiteUrlRefused) as caught:
        http.request("GET", f"http://{NAME}:{target.port}/rebound")

    assert caught.value.failed == "site_url"
    assert "rebound" not in HITS


def test_metadata_is_refused_at_connect_even_for_an_admitted_name(target: RunningServer) -> None:
    policy = HostPolicy.parse(f"{NAME},0.0.0.0/0", allow_private=True)
    http = HttpClient(timeout=2).pinned(AddressVetter(policy, ScriptedDns("169.254.169.254")))

    with pytest.raises(SiteUrlRefused, match="metadata"):
        http.request("GET", f"http://{NAME}:{target.port}/meta")


def test_redirects_from_a_psa_are_refused_and_never_followed(target: RunningServer) -> None:
    app = Flask("redirector")

    @app.route("/api/thing")
    def thing() -> Any:
        return redirect(f"{target.url}/stolen", code=302)

    loopback = HostPolicy.parse("", allow_private=True)
    http = HttpClient(timeout=2).pinned(AddressVetter(loopback))
    with serve(app) as redirector:
        response = http.request("GET", f"{redirector.url}/api/thing", auth=("user", "secret"))

    assert response.status_code == 302  # handed back as it is, not followed
    assert "stolen" not in HITS
    with pytest.raises(PsaRejected, match="redirects are not followed"):
        read_answer("Test", "GET", "thing", response, lambda r: "")
