"""Background work on the operating system's threads (the `Threads` port)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from writeback.domain.ports import Flag


class OsThreads:
    def flag(self) -> Flag:
        return threading.Event()

    def start(self, target: Callable[[], None]) -> Callable[[], None]:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread.join


OS_THREADS = OsThreads()
