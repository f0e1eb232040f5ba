"""`python -m bench.publishes FILE`: when each job change was published, right after its
commit, written to FILE as `job_id unix_time` lines. Heard in a process of its own, so that
the benchmark's client threads cannot delay it."""

from __future__ import annotations

import sys
import time

import redis
from tests.support import REDIS_URL

from writeback.adapters.job_feed import CHANNELS


def main(path: str) -> None:
    pubsub = redis.Redis.from_url(REDIS_URL).pubsub()
    pubsub.psubscribe(CHANNELS)
    with open(path, "w", buffering=1) as out:
        for message in pubsub.listen():
            heard = time.time()
            if message["type"] == "psubscribe":
                out.write("listening\n")
            elif message["type"] == "pmessage":
                out.write(f"{message['channel'].decode().split(':')[2]} {heard}\n")


if __name__ == "__main__":
    main(sys.argv[1])
