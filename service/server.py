"""The HTTP server: uvicorn (uvloop + httptools) with limits at the connection, and a bounded shutdown.

    server = create_server(Settings()); server.run()        (what `python -m service` does)

uvicorn reads request heads without bounds and has no header or body timeouts, so the protocol here
(GuardedProtocol, a subclass of uvicorn's HttpToolsProtocol passed as `uvicorn.Config(http=...)`) adds them:

  - request line (414), header lines, their count and bytes (431). A head still unfinished at the end of a read
    is refused once its request line alone, or the whole, is over (max_request_line_bytes + max_headers_bytes),
    without reading the rest; a finished one is checked line by line before the app sees it;
  - the head must arrive within header_timeout_s of the connection's start or of the previous response's
    end; the body may pause at most body_timeout_s and, after body_timeout_s, must average body_min_rate
    bytes/s. Either answers 408 (if no response has started) and closes;
  - max_connections open connections and max_requests_in_progress requests being answered; past either a
    request gets 503 with Retry-After, except /healthz, /readyz and the /v2 health checks, which have
    health_reserve more of each. Past max_connections + health_reserve a new connection gets 503 at once.

A connection lost before its answer is complete stops its request (connection_lost calls the Exchange that
service/middleware.py keeps in the request's scope): its queued work is dropped instead of run for nobody.

uvicorn's own `limit_concurrency` is not used: it counts connections and requests against one number and
refuses the health checks with the rest (text/plain, no Retry-After). What the protocol refuses it counts in
vae_rejected_total; vae_open_connections and vae_requests_in_progress read uvicorn's own sets when scraped.

Costs: one timer per connection (its first head), none per request while heads and bodies arrive in one read
(the body clock starts only when a body spans reads; the keep-alive wait is uvicorn's own timer); per request
a few attribute updates and a pass over the header list.

Shutdown (SIGTERM or SIGINT): Core.draining is set at once (/readyz answers 503; the app's middleware answers
new requests 503), then uvicorn's own shutdown: within 0.1 s it stops listening (new connections are refused),
closes idle connections and marks busy ones `Connection: close`; requests in progress get shutdown_timeout_s
to finish, then are cancelled. The process then exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from http import HTTPStatus
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.app import create_app
from service.core import Core
from service.logs import log_config
from service.middleware import EXCHANGE, HEALTH, Exchange
from service.settings import Settings
from service.vae_responses import error_response

HEALTH_TARGETS = frozenset(path.encode() for path in HEALTH)
SHORTEST_LINE = len(b"GET  HTTP/1.1")  # a request line's bytes besides its target, at the least
HEAD, BODY, DONE = 0, 1, 2  # what a connection is reading: a request head, a request body, nothing more


class Answer:
    """A refusal: its JSON error in the VAE API's shape, as an ASGI app (for uvicorn to send in turn, after
    any earlier answer on the connection) and as raw bytes (when no request was parsed), and its counter."""

    def __init__(self, counter: Counter, status: int, field: str, message: str, limit: Any, close: bool = True,
                 retry_after: int | None = None):
        headers = {"Connection": "close"} if close else {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.counter, self.response = counter, error_response(status, field, message, limit, headers=headers)
        lines = [b"%s: %s\r\n" % pair for pair in self.response.raw_headers]
        if not close:
            lines.append(b"connection: close\r\n")  # a raw answer always ends its connection
        self.status_line = b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
        self.tail = b"".join(lines) + b"\r\n" + self.response.body

    def raw(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The whole answer; `default_headers`: uvicorn's current ones (Date)."""
        return b"".join([self.status_line, *(b"%s: %s\r\n" % pair for pair in default_headers), self.tail])


class Guard:
    """The limits of GuardedProtocol, from the settings, and its answers."""

    def __init__(self, settings: Settings, rejected: Counter):
        s = settings
        self.request_line, self.header_line = s.max_request_line_bytes, s.max_header_bytes
        self.headers_bytes, self.headers = s.max_headers_bytes, s.max_headers
        # An unfinished head longer than this cannot fit whatever follows.
        self.head_budget = s.max_request_line_bytes + s.max_headers_bytes
        self.header_timeout, self.body_timeout, self.body_min_rate = (s.header_timeout_s, s.body_timeout_s,
                                                                      s.body_min_rate)
        self.connections, self.in_progress, self.reserve = (s.max_connections, s.max_requests_in_progress,
                                                            s.health_reserve)
        too_large, retry = rejected.labels("header_too_large"), s.retry_after_s
        self.line_too_long = Answer(too_large, 414, "request_line", "request line is over the limit (bytes)",
                                    s.max_request_line_bytes)
        self.too_many_headers = Answer(too_large, 431, "headers", "too many header lines", s.max_headers)
        self.header_too_large = Answer(too_large, 431, "headers", "a header line is over the limit (bytes)",
                                       s.max_header_bytes)
        self.headers_too_large = Answer(too_large, 431, "headers", "request headers are over the limit (bytes)",
                                        s.max_headers_bytes)
        self.head_late = Answer(rejected.labels("header_timeout"), 408, "headers",
                                "request headers did not arrive within the limit (seconds)", s.header_timeout_s)
        body_late = rejected.labels("body_timeout")
        self.body_stalled = Answer(body_late, 408, "body", "request body paused longer than the limit (seconds)",
                                   s.body_timeout_s)
        self.body_slow = Answer(body_late, 408, "body", "request body came slower than the limit (bytes/s)",
                                s.body_min_rate)
        self.too_many_connections = Answer(rejected.labels("connections"), 503, "connections",
                                           "too many open connections, retry later", s.max_connections,
                                           retry_after=retry)
        self.too_many_requests = Answer(rejected.labels("in_progress"), 503, "requests",
                                        "too many requests in progress, retry later", s.max_requests_in_progress,
                                        close=False, retry_after=retry)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `guard` (set on a subclass by `protocol_class`)."""

    guard: Guard

    # --- connection ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        g = self.guard
        self.url, self.reading, self.head_bytes, self.limit_timer = b"", HEAD, 0, None
        self.body_bytes, self.body_started, self.body_last = 0, 0.0, 0.0
        self.head_started = self.loop.time()
        open_now = len(self.connections)
        self.reserve_only = open_now > g.connections  # may only ask for a health check
        if open_now > g.connections + g.reserve:
            self.refuse(g.too_many_connections)
            return
        self.limit_timer = self.loop.call_at(self.head_started + g.header_timeout, self.head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reading = DONE
        self.stop_timer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            exchange = cycle.scope.get(EXCHANGE)  # set by service/middleware.py once the request reached it
            if isinstance(exchange, Exchange):
                exchange.client_gone()  # its work is dropped (the middleware counts and logs it)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading = self.reading
        if reading == HEAD:
            self.head_bytes += len(data)
        elif reading == BODY:
            self.body_bytes += len(data)
            self.body_last = self.loop.time()
        else:
            return  # refused and closing: the rest is not read
        super().data_received(data)
        if self.reading == HEAD:
            if self.head_bytes:  # the read ended inside a request head
                self.head_unfinished()
        elif self.reading == BODY and self.limit_timer is None:  # the read ended inside a body
            self.start_body_clock()

    def on_headers_complete(self) -> None:
        self.reading = BODY
        if self.limit_timer is not None:
            self.stop_timer()
        answer = self.head_refusal()
        if answer is None and (self.reserve_only or len(self.tasks) >= self.guard.in_progress):
            answer = self.load_refusal()
        if answer is None:
            super().on_headers_complete()
            return
        answer.counter.inc()
        app, self.app = self.app, answer.response  # uvicorn runs the answer as this request's app, in turn
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading, self.head_bytes = HEAD, 0
        if self.limit_timer is not None:
            self.stop_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.head_started = self.loop.time()  # the next head's time starts now (uvicorn times the idle wait)

    # --- request heads ---------------------------------------------------------------------------------------

    def request_line_bytes(self) -> int:
        if len(self.url) + SHORTEST_LINE <= self.guard.request_line:
            return 0  # short enough whatever the method
        return len(self.parser.get_method()) + len(self.url) + len(b"  HTTP/1.1")

    def head_refusal(self) -> Answer | None:
        """A finished head over a limit: its answer."""
        g = self.guard
        if len(self.headers) > g.headers:
            return g.too_many_headers
        if self.request_line_bytes() > g.request_line:
            return g.line_too_long
        total = 0
        for name, value in self.headers:
            size = len(name) + len(value) + 4  # name: value CRLF
            if size > g.header_line:
                return g.header_too_large
            total += size
        return g.headers_too_large if total > g.headers_bytes else None

    def head_unfinished(self) -> None:
        """A read ended inside a head: refuse it if it cannot fit any more, else time it."""
        if self.transport.is_closing():
            return
        g = self.guard
        if self.head_bytes > g.head_budget:
            self.refuse(g.headers_too_large, write=self.answered())
        elif self.request_line_bytes() > g.request_line:
            self.refuse(g.line_too_long, write=self.answered())
        elif self.limit_timer is None and self.answered():
            self.limit_timer = self.loop.call_at(self.head_started + g.header_timeout, self.head_timed_out)

    def head_timed_out(self) -> None:
        self.limit_timer = None
        if self.reading == HEAD and self.answered() and not self.transport.is_closing():
            # A connection that sent nothing is closed without an answer, as an idle keep-alive one is.
            self.refuse(self.guard.head_late, write=self.head_bytes > 0)

    # --- request bodies --------------------------------------------------------------------------------------

    def start_body_clock(self) -> None:
        if self.transport.is_closing():
            return
        self.body_started = self.body_last = self.loop.time()
        self.body_bytes = 0
        self.limit_timer = self.loop.call_at(self.body_started + self.guard.body_timeout, self.check_body)

    def check_body(self) -> None:
        """Runs when the body has paused body_timeout_s, or body_timeout_s after the last check while it flows."""
        self.limit_timer = None
        if self.reading != BODY or self.transport.is_closing():
            return
        cycle, g = self.cycle, self.guard
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self.start_body_clock()  # the server is not reading (the app has not asked for the body yet)
            return
        now = self.loop.time()
        if now - self.body_last >= g.body_timeout:
            self.body_timed_out(g.body_stalled)
        elif self.body_bytes < g.body_min_rate * (now - self.body_started):
            self.body_timed_out(g.body_slow)
        else:
            self.limit_timer = self.loop.call_at(self.body_last + g.body_timeout, self.check_body)

    def body_timed_out(self, answer: Answer) -> None:
        cycle = self.cycle
        started = cycle is not None and cycle.response_started
        if cycle is not None:
            # As if the client had gone: the app's next receive() says so, and anything it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.refuse(answer, write=not started)

    # --- load ------------------------------------------------------------------------------------------------

    def load_refusal(self) -> Answer | None:
        """Over max_connections or max_requests_in_progress: the answer, unless a health check fits the reserve."""
        g, busy = self.guard, len(self.tasks)
        if busy < g.in_progress + g.reserve and self.url.partition(b"?")[0] in HEALTH_TARGETS:
            return None
        return g.too_many_connections if self.reserve_only else g.too_many_requests

    # --- helpers ---------------------------------------------------------------------------------------------

    def answered(self) -> bool:
        """No response is being made on this connection (a raw answer would not cut into one)."""
        return self.cycle is None or self.cycle.response_complete

    def refuse(self, answer: Answer, write: bool = True) -> None:
        """Count the refusal, write `answer` raw (unless told not to) and close; nothing more is read."""
        answer.counter.inc()
        if write:
            self.transport.write(answer.raw(self.server_state.default_headers))
        self.reading = DONE
        self.stop_timer()
        self.transport.close()

    def stop_timer(self) -> None:
        if self.limit_timer is not None:
            self.limit_timer.cancel()
            self.limit_timer = None


def protocol_class(guard: Guard) -> type[GuardedProtocol]:
    class Protocol(GuardedProtocol):
        pass

    Protocol.guard = guard
    return Protocol


class Server(uvicorn.Server):
    """uvicorn's server; SIGTERM (or SIGINT) also sets Core.draining, and ends in exit status 0."""

    def __init__(self, config: uvicorn.Config, core: Core):
        super().__init__(config)
        self.core = core

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn's own handler also records the signal and raises it again once the server has stopped, so the
        # process would end killed by it (status -15) even after a clean drain; a second SIGINT still forces exit.
        self.core.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    def stop(self) -> None:
        """Stop serving (the app calls it when loading the models fails)."""
        self.should_exit = True


def create_server(settings: Settings) -> Server:
    """The app and the uvicorn server that serves it, with the limits of `settings`."""
    app = create_app(settings)
    core: Core = app.state.core
    config = uvicorn.Config(app, http=protocol_class(Guard(settings, core.metrics.rejected)),
                            **uvicorn_options(settings))
    server = Server(config, core)
    app.state.on_fatal = server.stop
    watch(core, server.server_state)
    return server


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config's options besides the app and the protocol, for one process or several (service/workers.py)."""
    proxies = settings.forwarded_allow_ips.strip()
    return dict(
        host=settings.host, port=settings.port,
        # uvloop and httptools (C event loop and HTTP parser) rather than asyncio's and h11's: see
        # docs/performance.md, "Why this server stack".
        loop="uvloop",
        ws="none",  # no WebSocket routes; an upgrade would also leave the protocol's limits behind
        log_config=log_config(settings), log_level=settings.log_level, access_log=settings.access_log,
        server_header=False, date_header=True,
        # uvicorn trusts X-Forwarded-* from 127.0.0.1 unless told otherwise: here only from the named proxies.
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
        # uvicorn annotates these int, but hands them to loop.call_later and asyncio.timeout, which take floats.
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.shutdown_timeout_s)


def watch(core: Core, state: ServerState) -> None:
    """The connection and request gauges read uvicorn's own sets when scraped: no work per request."""
    core.metrics.sample(core.metrics.open_connections, lambda: len(state.connections))
    core.metrics.sample(core.metrics.in_progress, lambda: len(state.tasks))
