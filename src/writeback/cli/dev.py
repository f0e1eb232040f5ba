"""Run the whole service locally on embedded defaults, and a demo that drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import click
import requests

from writeback import bootstrap
from writeback.adapters.db import migrate
from writeback.config import load_settings

API_PORT = 8000
SIM_PORT = 8089
MISSING_SIMULATORS = (
    "The simulators are not installed: they are a development tool, not part of the product. "
    "From a checkout, run `make install`, or `pip install -e ./simulators` "
    "(the psa-writeback-simulators package)."
)


def _connectwise_simulator() -> ModuleType:
    """The simulators ship apart from the product (its wheel and image leave them out), so
    they are imported only here, when asked for."""
    try:
        from writeback_simulators import connectwise
    except ImportError:
        raise click.ClickException(MISSING_SIMULATORS) from None
    return connectwise  # type: ignore[no-any-return]  # the simulators ship no types


@click.command()
@click.option("--port", default=API_PORT, show_default=True, help="API port.")
@click.option("--sim-port", default=SIM_PORT, show_default=True, help="Simulator port.")
def dev(port: int, sim_port: int) -> None:
    """Start API, worker (with beat) and a ConnectWise simulator on embedded defaults."""
    simulator_module = _connectwise_simulator().__name__
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    env = {**os.environ, "WRITEBACK_PSA_ALLOW_PRIVATE_HOSTS": "1"}  # the simulator is local
    python = sys.executable
    commands = {
        "simulator": [python, "-m", simulator_module, "--port", str(sim_port)],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "writeback.workers.celery_app",
            "worker",
            "-B",
            "--loglevel",
            "INFO",
        ],
        "api": [
            python,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--threads",
            "16",
            "writeback.wsgi:app",
        ],
    }
    children = [subprocess.Popen(cmd, env=env) for cmd in commands.values()]
    click.echo(
        f"\npsa-writeback is starting on embedded defaults (data in {settings.data_dir}).\n"
        f"  API        http://127.0.0.1:{port}/api/v1\n"
        f"  simulator  http://127.0.0.1:{sim_port} (ConnectWise)\n"
        f"Try it from another terminal:  make demo   (or .venv/bin/writeback demo)\n"
        "Stop with Ctrl-C.\n",
        err=True,
    )
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=SIM_PORT, show_default=True)
def simulator(host: str, port: int) -> None:
    """Run the ConnectWise simulator in the foreground."""
    _connectwise_simulator().main(["--host", host, "--port", str(port)])


@click.command()
@click.option("--api", "api_url", default=f"http://127.0.0.1:{API_PORT}", show_default=True)
@click.option("--sim", "sim_url", default=f"http://127.0.0.1:{SIM_PORT}", show_default=True)
def demo(api_url: str, sim_url: str) -> None:
    """Drive one resolve and one escalate against the local simulator, showing each step."""
    container = bootstrap.build()
    issued = container.accounts.create_account(f"demo-{int(time.time())}")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {issued.token}"

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = http.request(method, f"{api_url}/api/v1{path}", timeout=10, **kwargs)
        if response.status_code >= 400:
            raise click.ClickException(
                f"{method} {path} -> {response.status_code}: {response.text}"
            )
        return response.json()

    def stream(path: str, last_id: int | None) -> requests.Response:
        resume = {"Last-Event-ID": str(last_id)} if last_id else {}
        return http.get(
            f"{api_url}/api/v1{path}/events",
            headers={"Accept": "text/event-stream", **resume},
            stream=True,
            timeout=90,
        )

    connection = call(
        "POST",
        "/psa-connections",
        json={
            "provider": "connectwise",
            "site_url": sim_url,
            "company_id": "ACME",
            "credentials": {
                "public_key": "pub-key",
                "private_key": "priv-key",
                "client_id": "00000000-0000-0000-0000-000000000000",
            },
        },
    )
    call("PUT", "/account-settings", json={"resolved_status_id": 42, "escalated_status_id": 43})
    for kind, document, markdown in (
        ("resolve", "resolution-note", "## Resolution\nCleared the stuck print spooler."),
        ("escalate", "escalation-package", None),
    ):
        ticket = requests.post(
            f"{sim_url}/__sim/tickets", json={"summary": f"demo {kind}"}, timeout=10
        ).json()
        session = call(
            "POST",
            "/ai-sessions",
            json={
                "intake_content": {"text": "Printer queue stuck on the 3rd floor"},
                "conversation_messages": [
                    {"role": "user", "content": "Jobs sit in the queue and never print."},
                    {"role": "assistant", "content": "Restart the Print Spooler service."},
                ],
                "psa_connection_id": connection["id"],
                "psa_ticket_id": str(ticket["id"]),
            },
        )
        body = {"markdown": markdown} if markdown else {}
        accepted = call("POST", f"/ai-sessions/{session['id']}/{document}/post", json=body)
        click.echo(f"\n{kind}: ticket {ticket['id']}, job {accepted['job_id']}")
        _follow(call, stream, accepted["status_url"].removeprefix("/api/v1"))


def _follow(call: Any, stream: Any, path: str, timeout: float = 60.0) -> None:
    """Print the job's audit events as the stream delivers them, then its outcome. The
    stream ends at a final state or its lifetime; a reconnect resumes with Last-Event-ID."""
    last_id, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in sse_events(stream(path, last_id)):
            last_id = event["id"]
            detail = ", ".join(f"{k}={v}" for k, v in event["detail"].items())
            click.echo(f"  {event['at'][11:23]}  {event['step']:<18} {event['event']:<20} {detail}")
        job = call("GET", path)
        if job["state"] in ("succeeded", "failed"):
            extra = {k: job[k] for k in ("outcome", "external_id", "verified_status_name", "error")}
            click.echo(f"  {job['state']}: {extra}")
            return
    raise click.ClickException("the job did not finish in time: is the worker running?")


def sse_events(response: requests.Response) -> Iterator[dict[str, Any]]:
    """The `job_event` data of a Server-Sent Events response, each as soon as its bytes arrive
    (iter_lines would wait for a full buffer)."""
    with response:
        kind, pending = "", ""
        for chunk in iter(lambda: response.raw.read1(65536), b""):
            pending += chunk.decode()
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "job_event":
                    yield json.loads(line[6:])
