"""Serve a WSGI app (a vendor simulator) over real HTTP on a loopback port.

`serve()` runs the app in a daemon thread for tests, demos and benchmarks; `run_forever()` runs it
in the foreground, and `run_cli()` is the whole `python -m writeback_simulators.<vendor>` entry
point (`--host`, `--port`, log lines on stderr, the URL on stdout).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)


class _RequestHandler(WSGIRequestHandler):
    """Sends access lines through `logging` rather than werkzeug's coloured stderr output, and
    keeps connections alive as the real vendors do (clients reuse them; HTTP/1.0 would make
    every call a new TCP connection)."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.info('"%s" %s %s', self.requestline, code, size)


class RunningServer:
    """A server running in a background thread; stop it with `shutdown()` or a `with` block."""

    def __init__(self, server: BaseWSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return _url(self._server.host, self.port)

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # serve_forever() closes the listening socket itself once its loop ends.
        self._server.shutdown()
        self._thread.join()
        logger.debug("Stopped server on %s", self.url)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Start `app` on host:port (port 0 = any free port) and return once it accepts connections."""
    server = make_server(host, port, app, threaded=True, request_handler=_RequestHandler)
    thread = threading.Thread(
        target=server.serve_forever, name=f"wsgi-server-{server.port}", daemon=True
    )
    thread.start()
    running = RunningServer(server, thread)
    logger.debug("Serving on %s", running.url)
    return running


def run_forever(app: WSGIApplication, host: str, port: int, name: str) -> None:
    """Serve `app` in the foreground until interrupted, announcing the URL on one stdout line."""
    server = make_server(host, port, app, threaded=True, request_handler=_RequestHandler)
    # Launchers read this line to learn the port (useful with --port 0).
    print(f"{name} listening on {_url(host, server.port)}", flush=True)
    server.serve_forever()


def run_cli(
    create_app: Callable[[], WSGIApplication],
    argv: list[str] | None,
    name: str,
    port: int,
    description: str,
) -> None:
    """A simulator's command line: --host and --port (default `port`), log lines on stderr, then
    `run_forever()` announcing the URL as `name`; `description` is the --help text."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_forever(create_app(), args.host, args.port, name)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
