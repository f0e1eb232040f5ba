"""A frontend in a real browser: headless Chromium (Debian's, driven by Playwright) runs the
README's JavaScript on a page of another origin, against the API as compose runs it, with
nothing but fetch() and the browser's own EventSource."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.e2e.conftest import _up, http_api
from tests.support import Api, Process, Simulator, compose_command, free_port, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# The machine notes' flags: no sandbox as root, and nothing that calls out of this machine.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README = Path(__file__).resolve().parents[2] / "README.md"
# Records what the page's fetch() calls saw, and counts the EventSource's (re)connections.
HARNESS = """<!doctype html><meta charset="utf-8"><title>writeback frontend</title>
<script>
const seen = { fetches: [], opens: 0 };
const realFetch = window.fetch.bind(window);
window.fetch = async (url, init = {}) => {
  const answer = await realFetch(url, init);
  seen.fetches.push({
    url: String(url), sentEtag: (init.headers || {})["If-None-Match"] || null,
    status: answer.status, etag: answer.headers.get("ETag"),
    retryAfter: answer.headers.get("Retry-After"),
  });
  return answer;
};
window.EventSource = class extends window.EventSource {
  constructor(url) { super(url); this.addEventListener("open", () => { seen.opens += 1; }); }
};
</script>
<script src="/snippet.js"></script>
"""
RUN_SNIPPET = """async ([api, token, sessionId, streaming]) => {
  if (!streaming) window.EventSource = undefined;
  const updates = [];
  const job = await resolveAndFollow(api, token, sessionId, (update) => updates.push(update));
  return { job, updates, seen };
}"""
OPEN_STREAM = """(url) => new Promise((done) => {
  const stream = new EventSource(url);
  stream.addEventListener("job_event", () => { stream.close(); done("opened"); });
  stream.onerror = () => stream.readyState === EventSource.CLOSED && done("refused");
})"""


def readme_snippet() -> str:
    """The JavaScript of the README's frontend section, exactly as written there."""
    [snippet] = re.findall(r"```js\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return re.sub(r"^  ", "", snippet, flags=re.MULTILINE)  # the list item's indent


class PageServer(ThreadingHTTPServer):
    """The frontend's own origin: the harness page and the README's snippet."""

    def __init__(self) -> None:
        files = {"/": ("text/html", HARNESS), "/snippet.js": ("text/javascript", readme_snippet())}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path not in files:  # the browser asks for /favicon.ico
                    self.send_error(404)
                    return
                content_type, text = files[self.path]
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        super().__init__(("127.0.0.1", free_port()), Handler)
        # Another host name than the API's 127.0.0.1: another origin by host and by port.
        self.origin = f"http://localhost:{self.server_address[1]}"


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser_api(
    stack_env: dict[str, str], page_server: PageServer, stack_worker: Process, logs: Path
) -> Iterator[str]:
    """The API as compose runs it, beside the stack's worker, allowing the page's origin and
    ending every stream after a second, so that the browser has to reconnect."""
    port = free_port()
    env = {
        **stack_env,
        "WRITEBACK_CORS_ORIGINS": page_server.origin,
        "WRITEBACK_SSE_LIFETIME": "1",
    }
    api = Process(
        f"browser-api-{port}",  # one log per broker's run
        compose_command("api", {"0.0.0.0:8000": f"127.0.0.1:{port}"}),
        env,
        logs,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Booting the app took over 30 s once, on two cores shared by five suites.
        wait_until(lambda: _up(f"{url}/readyz"), timeout=90)
        yield url
    finally:
        api.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: run scripts/ensure-services.sh (make test does)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),  # a fresh user-data dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext, page_server: PageServer) -> Iterator[Page]:
    """The frontend's page, loaded afresh for each test."""
    page = browser.new_page()
    page.goto(page_server.origin)
    yield page
    page.close()


@pytest.fixture
def frontend(browser_api: str, account: dict[str, Any], simulator_process: Simulator) -> Api:
    api = http_api(browser_api, account["token"])
    api.put("/account-settings", {"cw_resolved_status_id": 42}, expect=200)
    return api


@pytest.fixture
def resolve_in_browser(
    page: Page,
    frontend: Api,
    browser_api: str,
    account: dict[str, Any],
    simulator_process: Simulator,
) -> Callable[..., dict[str, Any]]:
    """Runs the README's snippet in the page on a new session whose ticket answers with
    `fault` (so that the job stays in flight long enough to be seen moving), with or without
    the browser's EventSource; gives what the snippet returned and what the page saw."""

    def run(fault: str, *, streaming: bool, **params: float) -> dict[str, Any]:
        ticket_id = simulator_process.new_ticket()
        simulator_process.fault(fault, ticket_id, **params)
        session_id = frontend.session(frontend.connect_simulator(simulator_process.url), ticket_id)
        return page.evaluate(RUN_SNIPPET, [browser_api, account["token"], session_id, streaming])

    return run


def test_the_readme_snippet_follows_a_job_live_through_reconnections(
    resolve_in_browser: Callable[..., dict[str, Any]], frontend: Api
) -> None:
    run = resolve_in_browser("slow", streaming=True, delay=1.0, times=-1)

    job = run["job"]
    assert job["state"] == "succeeded" and job["outcome"] == "resolved"
    streamed = [update["event"] for update in run["updates"] if "event" in update]
    trail = frontend.get(f"/jobs/{job['id']}/events")["events"]
    # Every event of the audit trail exactly once, in order, across the reconnections that
    # the one-second stream lifetime forced on the browser.
    assert [event["id"] for event in streamed] == [event["id"] for event in trail]
    assert [event["event"] for event in streamed][-1] == "succeeded"
    assert run["seen"]["opens"] >= 2, run["seen"]
    # After `end`, one conditional poll gave the final job.
    assert [fetch["status"] for fetch in run["seen"]["fetches"]] == [202, 200]


def test_the_readme_snippet_polls_conditionally_without_eventsource(
    resolve_in_browser: Callable[..., dict[str, Any]],
) -> None:
    # A 429 holds the job for 5 s, longer than two polls apart: some polls find no change.
    run = resolve_in_browser("rate_limit", streaming=False, retry_after=5, times=1)

    assert run["job"]["state"] == "succeeded"
    polls = run["seen"]["fetches"][1:]
    unchanged = [poll for poll in polls if poll["status"] == 304]
    assert unchanged, polls
    # The page read each ETag and sent it back; in-flight answers told it when to ask again.
    assert all(poll["sentEtag"] and poll["etag"] == poll["sentEtag"] for poll in unchanged)
    assert all(int(poll["retryAfter"]) >= 1 for poll in unchanged)
    assert polls[-1]["status"] == 200 and polls[-1]["retryAfter"] is None
    states = [update["job"]["state"] for update in run["updates"]]
    assert states[-1] == "succeeded" and len(states) == sum(p["status"] == 200 for p in polls)


def test_an_edited_events_url_opens_no_other_jobs_stream(page: Page, frontend: Api) -> None:
    mine, other = (frontend.start(frontend.session()) for _ in range(2))
    # Another job's id in the path (that job is missing for this credential), or everywhere
    # (the signature no longer holds).
    in_path = mine["events_url"].replace(f"/jobs/{mine['job_id']}/", f"/jobs/{other['job_id']}/")
    everywhere = mine["events_url"].replace(mine["job_id"], other["job_id"])

    for edited, status in ((in_path, 404), (everywhere, 401)):
        assert page.evaluate(OPEN_STREAM, edited) == "refused"
        refused = page.evaluate(
            "async (url) => (await fetch(url, { headers: { Accept: 'text/event-stream' } }))"
            ".status",
            edited,
        )
        assert refused == status
    # The genuine URLs open, in the same browser.
    assert page.evaluate(OPEN_STREAM, other["events_url"]) == "opened"
    for accepted in (mine, other):
        frontend.wait_job(accepted["job_id"])
