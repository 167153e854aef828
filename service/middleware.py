"""The ASGI layer every HTTP request goes through before the router (service/app.py adds it)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import v2
from service import vae_responses as vae
from service.core import Core
from service.errors import TooLarge


class BodyTooLarge(Exception):
    pass


class HttpMiddleware:
    """What every HTTP request goes through, in one ASGI layer (each layer costs every request a hop):
      - the body limit: 413 by Content-Length or, when streamed, by counting;
      - HEAD answered as GET without the body (RFC 9110 9.3.2; FastAPI's routes list GET only);
      - metrics: requests, latency and errors per endpoint (the route's path template) and model."""

    def __init__(self, app: ASGIApp, core: Core, max_body_bytes: int):
        self.app, self.metrics, self.max_bytes = app, core.metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, seen, head = time.perf_counter(), 500, 0, scope["method"] == "HEAD"
        responded = False
        length = dict(scope["headers"]).get(b"content-length")
        if head:
            scope = {**scope, "method": "GET"}

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise BodyTooLarge  # refused by its declared length, before any of it is read
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not responded:
                status = 413
                await self.too_large(scope, receive, send)
        finally:
            self.observe(scope, status, time.perf_counter() - started)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = TooLarge("body", "request body is over the limit (bytes)", self.max_bytes)
        response = (v2 if v2.is_v2(scope["path"]) else vae).service_error(error)
        await response(scope, receive, send)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        model = scope.get("vae_model", "-")
        m = self.metrics
        m.labeled(m.requests, endpoint, model, str(status)).inc()
        m.labeled(m.latency, endpoint, model).observe(seconds)
        if status >= 400:
            m.labeled(m.errors, endpoint, model, str(status)).inc()
