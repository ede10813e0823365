"""One "worker group" for the shared-limit tests: threads that send Notion-shaped requests.

Run as ``python -m tests.sync.limit_group DB_URL BASE_URL RATE THREADS SECONDS TOKEN...``.
Every thread loops over the tokens for SECONDS: it waits for the token's shared slot (the
database at DB_URL), then sends one ``POST /v1/search`` through bgworkers' HTTP layer, which
pauses the token everywhere on a 429; a request of a paused token (``RateLimitedLater``) is
skipped, as a worker hands its message back. Prints the number of requests it sent.
"""

from __future__ import annotations

import sys
import threading
import time

import httpx

from bgworkers.db.engine import make_engine
from bgworkers.settings import load_settings
from bgworkers.sync.http import RequestRetryPolicy, build_client, send
from bgworkers.sync.shared_limits import (
    Limit,
    RateLimitedLater,
    SharedLimiter,
    SlotStore,
    credential_key,
)


def main(argv: list[str]) -> int:
    db_url, base_url, rate, threads, seconds, *tokens = argv
    limiter = SharedLimiter(SlotStore(make_engine(db_url)), fallback_share=0.1)
    client = build_client(load_settings(http_timeout_s=5.0))
    policy = RequestRetryPolicy(max_attempts=3, max_inline_wait_s=5.0)
    ends = time.monotonic() + float(seconds)
    sent = [0]
    lock = threading.Lock()

    def run(offset: int) -> None:
        n = offset
        while time.monotonic() < ends:
            token = tokens[n % len(tokens)]
            n += 1
            throttle = limiter.for_credential([Limit(credential_key("notion", token), float(rate))])

            def build(token: str = token) -> httpx.Request:
                return client.build_request(
                    "POST", f"{base_url}/v1/search", headers={"Authorization": f"Bearer {token}"}
                )

            try:
                send(
                    client,
                    build,
                    operation="search",
                    provider="notion",
                    policy=policy,
                    before_attempt=throttle.acquire,
                    on_rate_limited=throttle.pause,
                )
            except RateLimitedLater:
                continue  # paused: a worker hands the message back and goes on, as here
            with lock:
                sent[0] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(sent[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
