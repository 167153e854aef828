"""The per-request limits a call is split by, read from the service's OpenAPI document.

`GET /models` does not state them; `GET /openapi.json` does, with the values the server enforces (its settings,
read at start-up; docs/api.md): the most images (or latent vectors) per request is the `maxItems` of /encode's
multipart field `images` (VAE_MAX_IMAGES), the most images of one /sample is the `maximum` of its `n`
(VAE_MAX_SAMPLES). The request body limit (VAE_MAX_REQUEST_BYTES) is not published: it is a client option
whose default is the service's default. The document is read once per client, and only by a call that could
need splitting (more than one image); a limit given to the client is used instead of the document's, and when
the document cannot be read (a 4xx, or an answer that is not JSON: a proxy that does not pass it), or lacks a
limit, the service's documented defaults are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_IMAGES = 64  # VAE_MAX_IMAGES's default
DEFAULT_MAX_SAMPLES = 256  # VAE_MAX_SAMPLES's default
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024  # VAE_MAX_REQUEST_BYTES's default
BODY_MARGIN = 4096  # bytes of a body besides its items (JSON brackets, the closing multipart boundary)


@dataclass(frozen=True)
class Limits:
    max_images: int = DEFAULT_MAX_IMAGES
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @property
    def item_bytes(self) -> int:
        """Bytes of items one request may carry."""
        return max(1, self.max_request_bytes - BODY_MARGIN)


def openapi_limits(document: Any) -> dict[str, int]:
    """The limits the OpenAPI document states: {"max_images": ..., "max_samples": ...}, each where found."""
    found: dict[str, int] = {}
    if not isinstance(document, Mapping):
        return found
    paths = document.get("paths") or {}
    try:
        images = paths["/encode"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        found["max_images"] = int(images["properties"]["images"]["maxItems"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        n = next(p for p in paths["/sample"]["get"]["parameters"] if p.get("name") == "n")
        found["max_samples"] = int(n["schema"]["maximum"])
    except (KeyError, TypeError, ValueError, StopIteration):
        pass
    return {name: value for name, value in found.items() if value >= 1}
