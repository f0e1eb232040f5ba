"""Human durations in filters: `90`, `45s`, `30m`, `2h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError("use a duration like 90s, 30m, 2h or 7d")
    return timedelta(seconds=int(match[1]) * _SECONDS[match[2]])
