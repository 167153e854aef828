"""Rate limits: a token bucket per client (an API key's name, or the client's address without keys).

Past the limit a request gets 429 with Retry-After and the RateLimit-* fields (service/access.py's Gate asks).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

from service.errors import RateLimited
from service.settings import Settings

# Buckets kept at most (about 200 bytes each); past it the refilled ones, then the oldest, are forgotten.
MAX_CLIENTS = 65_536


class TokenBuckets:
    """A token bucket per client: `burst` tokens, refilled at `rate` per second; a request takes one.

    A bucket is (tokens, when counted), brought up to date when next used. One that has refilled is the same
    as none, so dropping it loses nothing; the table is bounded by `max_clients` whoever sends."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self.table: dict[str, tuple[float, float]] = {}

    def tokens(self, client: str, now: float) -> float:
        bucket = self.table.get(client)
        return self.burst if bucket is None else min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)

    def take(self, client: str) -> float:
        """Takes a token: 0.0 when there was one, else the seconds until there is (and nothing is taken)."""
        now = self.clock()
        tokens = self.tokens(client, now)
        if tokens < 1.0:
            return (1.0 - tokens) / self.rate
        if client not in self.table and len(self.table) >= self.max_clients:
            self.forget(now)
        self.table[client] = (tokens - 1.0, now)
        return 0.0

    def until_full(self, client: str) -> float:
        """Seconds until the bucket is full again."""
        return (self.burst - self.tokens(client, self.clock())) / self.rate

    def forget(self, now: float) -> None:
        """Drops the refilled buckets, then, if that freed less than a quarter, the oldest (they start full
        again: a refund to a few clients rather than memory without bound, e.g. from a client spraying
        addresses). It runs once per max_clients/4 new clients at most, so its cost per request stays small."""
        self.table = {c: b for c, b in self.table.items() if b[0] + (now - b[1]) * self.rate < self.burst}
        excess = len(self.table) - self.max_clients * 3 // 4
        for client in list(itertools.islice(self.table, max(0, excess))):
            del self.table[client]


def bucket_size(settings: Settings) -> int:
    return settings.rate_limit_burst or max(1, int(2 * settings.rate_limit))


def rate_limited(buckets: TokenBuckets, client: str, wait: float) -> RateLimited:
    """429 with Retry-After and the fields of draft-ietf-httpapi-ratelimit-headers-06 (the last draft with separate
    RateLimit-Limit/-Remaining/-Reset fields): the bucket size, none left, and the seconds until it is full."""
    headers = {"Retry-After": str(max(1, math.ceil(wait))), "RateLimit-Limit": str(buckets.burst),
               "RateLimit-Remaining": "0", "RateLimit-Reset": str(math.ceil(buckets.until_full(client)))}
    return RateLimited(None, f"over the rate limit of {buckets.rate:g} requests/s (burst {buckets.burst}); retry "
                       f"after {headers['Retry-After']} s", headers=headers)
