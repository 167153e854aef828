"""The ASGI layer every HTTP request goes through before the router (service/app.py adds it).

One layer, because each costs every request a hop (this one is outermost, so every answer passes it):
  - the request's ID: X-Request-ID from the client when sane (1 to 128 of [A-Za-z0-9._-]), else a new one,
    set for the request's log lines (service/logs.py) and sent back; and X-Content-Type-Options: nosniff on
    every answer (browsers must not guess a type for our JSON or PNG);
  - while the server shuts down (Core.draining), new requests other than the health checks get 503;
  - the body limit: 413 by Content-Length or, when streamed, by counting;
  - the bytes of all bodies held at once (BodyBudget): past it a request gets 503 with Retry-After, by its
    Content-Length before any of it is read, or when streamed, at the chunk that goes past it;
  - HEAD answered as GET without the body (RFC 9110 9.3.2; FastAPI's routes list GET only);
  - a client that goes away: the server (service/server.py, which finds the request's Exchange in its scope
    under EXCHANGE) calls `Exchange.client_gone` when the connection is lost before the answer is complete,
    which cancels the request's task, so its queued batch rows are dropped and /loglik stops before its next
    chunk. (A watcher task per request waiting for ASGI's `http.disconnect` would do it under any server, but
    it measurably slowed /encode: docs/performance.md, "What the protections cost".) A client that leaves
    mid-body ends the same way under any server (ASGI's `http.disconnect`). Either is counted as cancelled
    (status 499, the "client closed request" of nginx's logs) and logged as one INFO line, not as an error;
  - metrics: requests, latency and errors per endpoint (the route's path template) and model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Iterable

from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import v2
from service import vae_responses as vae
from service.core import Core
from service.errors import Overloaded, ServiceError, TooLarge
from service.logs import request_id

log = logging.getLogger("service.requests")
HEALTH = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
EXCHANGE = "vae.exchange"  # the scope key under which the server finds a request's Exchange
CLIENT_GONE = 499
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")  # nothing that could break a log line or a header
NOSNIFF = (b"x-content-type-options", b"nosniff")
# Made IDs: this process's random prefix and a counter, unique across processes and restarts without a random
# draw per request (they name log lines and guard nothing).
ID_PREFIX = os.urandom(8).hex()
ID_NUMBERS = itertools.count(1)


class BodyTooLarge(Exception):
    pass


class BodyBudget:
    """Request body bytes held by the requests in progress, within `limit` (a request alone always gets in)."""

    def __init__(self, limit: int, retry_after_s: int, refused: Counter):
        self.limit, self.held, self.refused = limit, 0, refused
        self.retry_after = str(retry_after_s)

    def take(self, n: int) -> None:
        if self.held and self.held + n > self.limit:
            self.refused.inc()
            raise Overloaded(None, f"the server holds {self.held} bytes of request bodies; try again later",
                             self.limit, headers={"Retry-After": self.retry_after})
        self.held += n


class Exchange:
    """One request's passage through the layer: what was read and sent, and whether its client went away."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int, head: bool, budget: BodyBudget,
                 answer_headers: list[tuple[bytes, bytes]]):
        self.upstream_receive, self.upstream_send = receive, send
        self.answer_headers = answer_headers  # added to the answer's own
        self.max_bytes, self.head, self.budget = max_bytes, head, budget
        self.seen, self.status, self.responded, self.finished, self.gone = 0, 500, False, False, False
        self.held, self.declared = 0, False  # body bytes taken from the budget; by Content-Length?
        self.task = asyncio.current_task()  # the request's, cancelled if its client goes away

    def declare(self, length: int) -> None:
        self.budget.take(length)
        self.held, self.declared = length, True

    async def receive(self) -> Message:
        message = await self.upstream_receive()
        if message["type"] == "http.request":
            chunk = len(message.get("body", b""))
            self.seen += chunk
            if self.seen > self.max_bytes:
                raise BodyTooLarge
            if not self.declared and chunk:
                self.budget.take(chunk)  # Overloaded: answered by the app's handler, in its protocol's shape
                self.held += chunk
        elif message["type"] == "http.disconnect":
            self.gone = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.responded = message["status"], True
            # a new list: a response object's own header list may be sent again (cached responses)
            message = {**message, "headers": [*message.get("headers", ()), *self.answer_headers]}
        elif message["type"] == "http.response.body":
            self.finished = not message.get("more_body", False)  # from here on a lost connection cancels nothing
            if self.head:
                message = {**message, "body": b""}
        await self.upstream_send(message)

    def client_gone(self) -> None:
        """The connection was lost before the answer was complete (the server calls it): stop the request."""
        if not self.finished and not self.gone and self.task is not None:
            self.gone = True
            self.task.cancel()

    def close(self) -> None:
        self.budget.held -= self.held


class HttpMiddleware:
    def __init__(self, app: ASGIApp, core: Core):
        settings = core.settings
        self.app, self.core, self.metrics, self.max_bytes = app, core, core.metrics, settings.max_request_bytes
        self.draining = core.metrics.rejected.labels("draining")
        self.retry_after = str(settings.retry_after_s)
        self.budget = BodyBudget(settings.max_body_bytes_in_flight, settings.retry_after_s,
                                 core.metrics.rejected.labels("body_bytes"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, head = time.perf_counter(), scope["method"] == "HEAD"
        length, rid = read_headers(scope["headers"])
        rid = rid or f"{ID_PREFIX}-{next(ID_NUMBERS):x}"
        request_id.set(rid)  # this request's task only (service/logs.py)
        exchange = scope[EXCHANGE] = Exchange(receive, send, self.max_bytes, head, self.budget,  # the server's scope
                                              [(b"x-request-id", rid.encode()), NOSNIFF])
        if head:
            scope = {**scope, "method": "GET"}
        try:
            if self.core.draining and scope["path"] not in HEALTH:
                self.draining.inc()
                raise self.shutting_down()
            if length is not None and length.isdigit():
                if int(length) > self.max_bytes:
                    raise BodyTooLarge  # refused by its declared length, before any of it is read
                exchange.declare(int(length))
            await self.app(scope, exchange.receive, exchange.send)
        except BodyTooLarge:
            if not exchange.responded:
                error = TooLarge("body", "request body is over the limit (bytes)", self.max_bytes)
                await self.answer(scope, exchange, error)
        except Overloaded as exc:
            await self.answer(scope, exchange, exc)
        except (asyncio.CancelledError, ClientDisconnect):
            if exchange.gone:
                self.client_gone(scope, exchange, started)
            elif self.core.draining:  # cut at VAE_SHUTDOWN_TIMEOUT_S: a 503 rather than the server's text 500
                self.cut_at_shutdown(scope)
                if not exchange.responded:
                    await self.answer(scope, exchange, self.shutting_down())
            else:
                raise  # cancelled for a reason not ours to swallow
        finally:
            exchange.close()
            self.observe(scope, exchange.status, time.perf_counter() - started)

    async def answer(self, scope: Scope, exchange: Exchange, error: ServiceError) -> None:
        response = (v2 if v2.is_v2(scope["path"]) else vae).service_error(error)
        await response(scope, exchange.upstream_receive, exchange.send)

    def shutting_down(self) -> Overloaded:
        return Overloaded(None, "the server is shutting down", headers={"Retry-After": self.retry_after})

    def cut_at_shutdown(self, scope: Scope) -> None:
        uncancel()
        log.warning("cut at shutdown: %s %s did not finish within VAE_SHUTDOWN_TIMEOUT_S", scope["method"],
                    scope["path"])

    def client_gone(self, scope: Scope, exchange: Exchange, started: float) -> None:
        uncancel()  # the cancellation was the watcher's, and it ends here
        exchange.status = CLIENT_GONE
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.labeled(self.metrics.cancelled, endpoint, scope.get("vae_model", "-")).inc()
        log.info("client went away: %s %s after %.3f s; its work was dropped", scope["method"], scope["path"],
                 time.perf_counter() - started)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        model = scope.get("vae_model", "-")
        m = self.metrics
        m.labeled(m.requests, endpoint, model, str(status)).inc()
        m.labeled(m.latency, endpoint, model).observe(seconds)
        if status >= 400 and status != CLIENT_GONE:
            m.labeled(m.errors, endpoint, model, str(status)).inc()


def read_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None]:
    """The request's Content-Length, and its X-Request-ID when sane, in one pass (the server lowercases names)."""
    length = rid = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"x-request-id" and SANE_REQUEST_ID.fullmatch(value):
            rid = value.decode("ascii")
    return length, rid


def uncancel() -> None:
    """End the current task's pending cancellation, which the layer has handled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
