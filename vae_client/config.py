"""What both clients are built from: the base URL, the headers (the API key), the timeout, the retry policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from vae_client.retry import RetryPolicy

DEFAULT_TIMEOUT = 120.0  # seconds to connect, and between bytes of an answer: /loglik at k=5000 takes a while
USER_AGENT = "vae-client (python-httpx)"


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    retry: RetryPolicy


def client_config(base_url: str, api_key: str | None, timeout: float | httpx.Timeout | None, retries: int,
                  backoff: float, backoff_cap: float, max_retry_after: float,
                  headers: Mapping[str, str] | None) -> ClientConfig:
    """`base_url` without a scheme gets http://. The API key goes as `Authorization: Bearer <key>`, one of the
    two forms the service reads (the other is X-API-Key; docs/operations.md#access)."""
    url = base_url if "://" in base_url else f"http://{base_url}"
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if api_key is not None:
        sent["Authorization"] = f"Bearer {api_key}"
    limit = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    return ClientConfig(url.rstrip("/"), sent, limit, RetryPolicy(retries, backoff, backoff_cap, max_retry_after))
