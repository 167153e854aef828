"""What a call can raise: the service's JSON error as an exception, one class per kind of failure.

    VAEClientError                    every error of this package
    ├── NetworkError                  no answer: the connection failed or broke (after the retries)
    │   └── RequestTimeoutError       no answer within the client's timeout (not retried)
    ├── UnexpectedResponseError       an answer that is not the service's (not JSON, or not the expected shape)
    ├── BadRequestError               any 4xx: the request is at fault; never retried, except 429
    │   ├── AuthenticationError       401: no valid API key
    │   ├── PermissionDeniedError     403: the key's role may not use the route
    │   ├── NotFoundError             404: an unknown model (field query.model or path.name; limit: the loaded ones)
    │   ├── PayloadTooLargeError      413: the body, or one image's pixels, over a limit
    │   ├── UnsupportedMediaTypeError 415: not PNG or JPEG, or a content type the route does not read
    │   ├── InvalidInputError         422: an invalid option or input, or a count over its limit
    │   └── RateLimitError            429: over the rate limit (retried, honouring Retry-After)
    └── ServerError                   any 5xx
        └── ServiceUnavailableError   503: loading, shutting down or overloaded (retried, honouring Retry-After)

Errors the service answered carry its body's fields: `status`, `field` (the input or option at fault, e.g.
`query.k`, `images[3]`), `message`, `limit` (the bound broken, when one applies), `errors` (every validation
error), and `retry_after` (seconds) and `request_id` from the answer's headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


class VAEClientError(Exception):
    """Base of every error of the client. Fields the failure has no value for are None."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None, limit: Any = None,
                 errors: Sequence[Mapping[str, Any]] = (), retry_after: float | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.message, self.status, self.field, self.limit = message, status, field, limit
        self.errors = [dict(e) for e in errors]
        self.retry_after, self.request_id = retry_after, request_id

    def __str__(self) -> str:
        where = f" {self.field}" if self.field else ""
        bound = f" (limit {self.limit!r})" if self.limit is not None else ""
        head = f"{self.status}{where}: " if self.status is not None else (f"{self.field}: " if self.field else "")
        return f"{head}{self.message}{bound}"


class NetworkError(VAEClientError):
    """The service could not be reached, or the connection broke before the answer (after the retries)."""


class RequestTimeoutError(NetworkError):
    """No answer within the client's timeout. Not retried: the service may still be working on the request."""


class UnexpectedResponseError(VAEClientError):
    """An answer that is not the service's: not JSON, or without the fields this client reads."""


class BadRequestError(VAEClientError):
    """A 4xx answer: the request is at fault and sending it again gives the same answer (429 aside)."""


class AuthenticationError(BadRequestError):
    """401: no API key, or one the service does not know."""


class PermissionDeniedError(BadRequestError):
    """403: the API key's role may not use this route."""


class NotFoundError(BadRequestError):
    """404: an unknown model (`limit` lists the loaded models) or path."""


class PayloadTooLargeError(BadRequestError):
    """413: the request body, or one image's pixels, over the service's limit (`limit`)."""


class UnsupportedMediaTypeError(BadRequestError):
    """415: an image format other than PNG or JPEG, or a content type the route does not read."""


class InvalidInputError(BadRequestError):
    """422: an option or input the service refuses; `field` names it, `limit` gives the bound where one applies."""


class RateLimitError(BadRequestError):
    """429: over the request rate; raised once the retries are spent (`retry_after`: the service's wait)."""


class ServerError(VAEClientError):
    """A 5xx answer."""


class ServiceUnavailableError(ServerError):
    """503: the models are loading, the service is shutting down, or a bound on work was reached; raised once the
    retries are spent (`retry_after`: the service's wait)."""


BY_STATUS: dict[int, type[VAEClientError]] = {
    401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError, 413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError, 422: InvalidInputError, 429: RateLimitError, 503: ServiceUnavailableError}


def error_class(status: int) -> type[VAEClientError]:
    if status in BY_STATUS:
        return BY_STATUS[status]
    if 400 <= status < 500:
        return BadRequestError
    if status >= 500:
        return ServerError
    return UnexpectedResponseError


def error_from_answer(status: int, content: bytes, *, retry_after: float | None = None,
                      request_id: str | None = None, indices: Sequence[int] | None = None) -> VAEClientError:
    """The exception for an error answer. Its body is the service's `{"error": {status, field, message, limit,
    errors}}`; another body (a proxy's page) keeps its status and the start of its text as the message.
    `indices`: the position, in the caller's input, of each item of the request (for a request that carried a
    slice of it), so a field such as `images[1]` names the caller's item."""
    detail: dict[str, Any] = {}
    try:
        body = json.loads(content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"]
    except ValueError:
        pass
    message = str(detail.get("message") or f"HTTP {status}: {content[:200].decode('utf-8', 'replace').strip()}")
    field = detail.get("field")
    field = reindexed(field, indices) if isinstance(field, str) else None
    errors = [{**e, "field": reindexed(e["field"], indices)} if isinstance(e.get("field"), str) else e
              for e in detail.get("errors") or [] if isinstance(e, dict)]
    return error_class(status)(message, status=status, field=field, limit=detail.get("limit"), errors=errors,
                               retry_after=retry_after, request_id=request_id)


ITEM_FIELD = re.compile(r"^((?:body\.)?(?:images|arrays|z))\[(\d+)\]")


def reindexed(field: str, indices: Sequence[int] | None) -> str:
    """`images[1]` -> `images[65]` when the request's item 1 is the caller's item 65."""
    match = ITEM_FIELD.match(field)
    if indices is None or match is None or int(match.group(2)) >= len(indices):
        return field
    return f"{match.group(1)}[{indices[int(match.group(2))]}]{field[match.end():]}"
