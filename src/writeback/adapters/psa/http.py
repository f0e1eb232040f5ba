"""HTTP plumbing shared by the PSA providers: one session per thread, timeouts on every call,
no redirects, and transport failures turned into domain errors."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from writeback.domain.errors import PsaTransientError

log = logging.getLogger(__name__)


class HttpClient:
    """requests.Session is not documented as thread-safe, and workers run threads: one each."""

    def __init__(self, timeout: float, user_agent: str = "psa-writeback/0.1") -> None:
        self.timeout = timeout
        self._user_agent = user_agent
        self._local = threading.local()
        self._gate: Callable[[], None] | None = None

    def gated(self, gate: Callable[[], None]) -> HttpClient:
        """The same client (and connection pools), calling `gate` before every request: how a
        tenant's request budget is enforced without providers knowing about it."""
        clone = copy.copy(self)
        clone._gate = gate
        return clone

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self._user_agent
            self._local.session = session
        return session

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if self._gate is not None:
            self._gate()
        try:
            # Never follow redirects: a redirect could carry our credentials to another host.
            return self._session().request(
                method, url, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise PsaTransientError(
                f"{method} {_path(url)} timed out after {self.timeout} s", failed="site_url"
            ) from None
        except requests.ConnectionError as exc:
            raise PsaTransientError(
                f"{method} {_path(url)} failed: {type(exc).__name__}", failed="site_url"
            ) from None


def _path(url: str) -> str:
    """The URL without scheme and host, for error messages (hosts may be tenant-identifying)."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def retry_after_seconds(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
