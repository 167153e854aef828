"""What can go wrong with a request, as the service core says it: no HTTP here.

Every error names the `field` at fault and, where one applies, the `limit` it broke. An input's field is the
label its caller gave it ("images[2]", "body.z[0]"); an option's is its bare name ("from", "model") with
`option` set, so each surface says where its options live ("query.from" in the VAE API). Each protocol
surface turns the kind into its own status code and body: the VAE API into {"error": {status, field,
message, limit}} (service/vae_responses.py), the Open Inference Protocol into {"error": message}
(service/v2.py).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, field: str | None, message: str, limit: Any = None, *, option: bool = False,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.field, self.message, self.limit, self.option = field, message, limit, option
        self.headers = headers or {}  # for the answer, e.g. Retry-After


class InvalidInput(ServiceError):
    """Well-formed but not acceptable: a value out of range, a wrong size or shape, an undecodable image."""


class MalformedInput(ServiceError):
    """The request cannot be parsed as its declared format (a broken multipart body)."""


class TooLarge(ServiceError):
    """Over a size limit: the body, or one image's pixels."""


class UnsupportedMedia(ServiceError):
    """A content type or image format the service does not read."""


class NotFound(ServiceError):
    """An unknown model."""


class Unavailable(ServiceError):
    """The service cannot serve now: models still loading, or start-up failed."""


class Overloaded(ServiceError):
    """A bound on work is reached (a full batch queue, /loglik's rows, connections, requests in progress) or the
    server is shutting down: try again later (`headers` carries Retry-After)."""


class Unauthorized(ServiceError):
    """No valid API key."""


class Forbidden(ServiceError):
    """A valid API key whose role may not use this route."""


class RateLimited(ServiceError):
    """Over the key's (or address's) request rate (`headers`: Retry-After and RateLimit-*)."""
