"""Who may call the service, how often, from which web pages; and which request each answer and log line is for.

Layers, outermost first (`install_access`, called in service/app.py create_app before the outermost layer,
service/middleware.py's, which gives every request its ID and every answer X-Content-Type-Options):
  CORSMiddleware  Starlette's, only with VAE_CORS_ORIGINS: answers preflights before any key is asked for.
  Gate            only with VAE_API_KEYS_FILE or VAE_RATE_LIMIT: 401/403 by API key and role, then 429 by a
                  token bucket per key (per client address without keys). Health routes and the static
                  pages' files (PUBLIC_PATHS, PUBLIC_PREFIXES: the web console, the docs' scripts) pass untouched.
With keys, limits and CORS off (the defaults) nothing is installed: a request pays nothing here.

The keys (service/api_keys.py): `user` may call every route but /metrics and /admin/...; `admin` may call all of
them. The buckets: service/rate_limit.py.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service import v2
from service import vae_responses as vae
from service.api_keys import Keys, load_keys, presented_key
from service.errors import Forbidden, RateLimited, ServiceError, Unauthorized
from service.metrics import Metrics
from service.rate_limit import TokenBuckets, bucket_size, rate_limited
from service.settings import Settings

log = logging.getLogger("service.access")

# Answered without a key and never rate limited: orchestrators' probes must see the process, not the caller.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# Static files that hold no data (service/pages.py): the web console's page, `/` redirecting to it, and the
# scripts and styles of /docs and /redoc. Public, so a browser can open the console and type its key there; the
# console's API calls need the key like any client's. /docs, /redoc and /openapi.json themselves still need one.
PUBLIC_PATHS = frozenset({"/", "/console"})
PUBLIC_PREFIXES = ("/console/", "/docs-assets/")
# What a browser page on an allowed origin may send and read (CORS-safelisted headers are always allowed).
CORS_HEADERS = ["Authorization", "X-API-Key", "X-Request-ID"]
CORS_EXPOSED = ["X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def needs_admin(path: str) -> bool:
    return path == "/metrics" or path == "/admin" or path.startswith("/admin/")


# The layers.

class Gate:
    """401 without a valid key, 403 for a key whose role may not use the path, 429 over the rate limit; each
    counted in vae_rejected_total{reason} and logged without the key (INFO; DEBUG for 429s). `keys` None: no keys
    asked (the client's address is then its identity for the rate limit); `buckets` None: no limit."""

    def __init__(self, app: ASGIApp, metrics: Metrics, keys: Keys | None, buckets: TokenBuckets | None):
        self.app, self.metrics, self.keys, self.buckets = app, metrics, keys, buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_open(scope["path"]):
            refusal = self.check(scope)
            if refusal is not None:
                await self.refuse(refusal, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> ServiceError | None:
        client = scope["client"][0] if scope.get("client") else "-"
        if self.keys is not None:
            presented = presented_key(scope["headers"])
            key = None if presented is None else self.keys.match(presented)
            if key is None:
                return unauthorized(presented is not None)
            if key.role != "admin" and needs_admin(scope["path"]):
                return Forbidden(None, f"the API key {key.name!r} has role {key.role}; this path needs role admin")
            client = key.name
        if self.buckets is not None:
            wait = self.buckets.take(client)
            if wait:
                return rate_limited(self.buckets, client, wait)
        return None

    async def refuse(self, error: ServiceError, scope: Scope, receive: Receive, send: Send) -> None:
        reason = REASONS[type(error)]
        self.metrics.labeled(self.metrics.rejected, reason).inc()
        # %r: the path is the client's text; repr keeps a line one line in text logs. Refusals for rate come in
        # floods (the metric counts them): DEBUG, not a line each at the default level.
        log.log(logging.DEBUG if reason == "rate_limited" else logging.INFO, "refused %s %r: %s", scope["method"],
                scope["path"], reason)
        response = (v2 if v2.is_v2(scope["path"]) else vae).service_error(error)
        await response(scope, receive, send)


REASONS: dict[type[ServiceError], str] = {Unauthorized: "unauthorized", Forbidden: "forbidden",
                                          RateLimited: "rate_limited"}


def unauthorized(presented: bool) -> Unauthorized:
    # RFC 6750 3.1: no error code when no credentials came, invalid_token when a wrong one did
    if presented:
        return Unauthorized(None, "the API key is not valid",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return Unauthorized(None, "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
                        headers={"WWW-Authenticate": "Bearer"})


def install_access(app: FastAPI, settings: Settings) -> None:
    """Adds the layers the settings ask for; call before adding the outermost layer (the last added runs first).
    A keys file that cannot be read or is invalid raises StartupError: the server does not start."""
    keys = load_keys(settings.api_keys_file) if settings.api_keys_file is not None else None
    buckets = TokenBuckets(settings.rate_limit, bucket_size(settings)) if settings.rate_limit > 0 else None
    if keys is not None or buckets is not None:
        app.add_middleware(Gate, metrics=app.state.core.metrics, keys=keys, buckets=buckets)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, max_age=600)


