"""One request's outcome: its JSON answer, or the error to raise and whether it may be retried (retry.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from vae_client.calls import Call
from vae_client.errors import (
    NetworkError,
    RequestTimeoutError,
    UnexpectedResponseError,
    VAEClientError,
    error_from_answer,
)
from vae_client.retry import RETRY_EXCEPTIONS, RETRY_STATUSES, parse_retry_after


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: VAEClientError | None = None
    retry: bool = False  # the error is one to retry after a wait


def answered(call: Call, response: httpx.Response) -> Outcome:
    """A 2xx answer's JSON; any other answer as the service's error (errors.py)."""
    if response.is_success:
        try:
            return Outcome(json.loads(response.content))
        except ValueError:
            return Outcome(error=UnexpectedResponseError(
                f"{call.method} {call.path} answered {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}): is the URL the VAE service's?",
                status=response.status_code))
    error = error_from_answer(response.status_code, response.content,
                              retry_after=parse_retry_after(response.headers.get("retry-after")),
                              request_id=response.headers.get("x-request-id"), indices=call.indices)
    return Outcome(error=error, retry=response.status_code in RETRY_STATUSES)


def failed(call: Call, exc: httpx.RequestError) -> Outcome:
    """No answer: the connection failed or broke (retried), or the timeout passed (not retried)."""
    retry = isinstance(exc, RETRY_EXCEPTIONS)
    kind = RequestTimeoutError if isinstance(exc, httpx.TimeoutException) and not retry else NetworkError
    error = kind(f"{call.method} {call.path}: {type(exc).__name__}: {exc or 'no answer'}")
    error.__cause__ = exc
    return Outcome(error=error, retry=retry)
