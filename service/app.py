"""The FastAPI application: lifespan (models loaded once), body-size limit, metrics, error handlers.

Start-up: configuration errors (an explicit provider this onnxruntime lacks, a missing model directory)
fail at once. Models then load in a worker thread while the server already answers: /healthz says the
process runs, /readyz answers 503 until loading is done. An error found while loading (CUDA asked for
but the sessions fell back to CPU, an unknown VAE_DEFAULT_MODEL) is logged, kept for /readyz, and stops
the server through `on_fatal` (python -m service then exits with status 1).

    uvicorn service.app:create_app --factory     (or: python -m service)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.edit_routes import build_edit_router
from service.errors import error_body, install_error_handlers
from service.fastlane import FastLane
from service.inference import Inference
from service.metrics import Metrics
from service.offload import Workers
from service.registry import Registry, StartupError, check_configuration, load_registry
from service.routes import FAST_ROUTES, build_router
from service.runtime import settle_interpreter, tune_interpreter
from service.settings import Settings

log = logging.getLogger("service")


class AppState:
    """What routes reach through `request.app.state.vae`: settings, loaded models, inference, metrics."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.workers = Workers(settings.worker_threads, settings.image_threads)
        self.inference = Inference(self.metrics, settings, self.workers)
        self.registry: Registry | None = None  # None until loading is done (/readyz answers 503)
        self.startup_error: str | None = None
        self.on_fatal: Callable[[], None] | None = None  # set by python -m service: stop the server
        self.loader: asyncio.Task[None] | None = None

    async def load(self) -> None:
        started = time.perf_counter()
        try:
            registry = await self.workers.run(load_registry, self.settings)
        except StartupError as exc:
            self.startup_error = str(exc)
            log.critical("start-up failed: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal()
            return
        self.registry = registry
        settle_interpreter()
        log.info("ready in %.2f s: models %s (default %s)", time.perf_counter() - started,
                 sorted(registry.models), registry.default)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a request body over the limit, by Content-Length or, when streamed, by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(error_body(413, "body", "request body is over the limit (bytes)", self.max_bytes)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Requests, latency and errors per endpoint (the route's path template) and model."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            model = scope.get("vae_model", "-")
            m = self.metrics
            m.labeled(m.requests, endpoint, model, str(status)).inc()
            m.labeled(m.latency, endpoint, model).observe(time.perf_counter() - started)
            if status >= 400:
                m.labeled(m.errors, endpoint, model, str(status)).inc()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_configuration(settings)  # StartupError: the server does not start, with this message
        tune_interpreter(settings)
        state.loader = asyncio.create_task(state.load())
        yield
        state.loader.cancel()
        state.inference.close()
        state.workers.close()

    telemetry: TelemetryConfig | None = (None if settings.opentelemetry else
                                         {"tracing": False, "metrics": False, "logs": False})
    app = FastAPI(title="VAE service", version="0.1.0", lifespan=lifespan, telemetry=telemetry,
                  description="Variational autoencoders (Prince, Understanding Deep Learning, ch. 17) over "
                              "ONNX Runtime: encode images to latent codes, decode and sample images, score "
                              "how likely an image is. Every option is a query parameter; JSON bodies may "
                              "carry them too. Errors: {\"error\": {status, field, message, limit}}.")
    app.state.vae = state
    install_error_handlers(app)
    router = build_router(settings)
    app.include_router(router)
    app.include_router(build_edit_router(settings))

    # the inference routes take the Request alone and skip FastAPI's per-request machinery (fastlane.py)
    app.add_middleware(FastLane, routes=[r for r in router.routes if isinstance(r, APIRoute) and r.path in FAST_ROUTES])
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)  # outermost
    return app
