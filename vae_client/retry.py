"""When to send a request again, and how long to wait first.

Retried: connection failures (refused, reset, closed before the answer, a connect timeout), 429 and 503. Never
retried: any other answer, and read or write timeouts (the service may still be working on the request).
The wait before retry number `a` (0 for the first) is drawn uniformly from [0, min(cap, base * 2**a)] ("full
jitter"), and is at least the answer's `Retry-After` when it has one. A `Retry-After` longer than
`max_retry_after` is not waited for: the error is raised at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 503})
# The connection failed or broke; the request was not answered. Read and write timeouts are not among them.
RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError,
                                                 httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError)


@dataclass(frozen=True)
class RetryPolicy:
    """`retries`: attempts after the first (0: never retry); `backoff`, `backoff_cap`: the base and the cap of
    the exponential wait, in seconds; `max_retry_after`: the longest Retry-After that is waited for."""

    retries: int = 3
    backoff: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.backoff_cap < 0 or self.max_retry_after < 0:
            raise ValueError("retries, backoff, backoff_cap and max_retry_after must be >= 0")

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number `attempt` (0 for the first), or None when no retry is left or
        the service asks for a longer wait than `max_retry_after`."""
        if attempt >= self.retries or (retry_after is not None and retry_after > self.max_retry_after):
            return None
        wait = random.uniform(0.0, min(self.backoff_cap, self.backoff * 2.0**attempt))
        return max(wait, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (RFC 9110 10.2.3: seconds, or an HTTP date) in seconds from now; None if absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
