"""The FastAPI application: two protocol surfaces over one core, with the body limit, HEAD, metrics and errors.

    uvicorn service.app:create_app --factory     (or: python -m service)

Start-up: configuration errors (an explicit provider this onnxruntime lacks, a missing model directory) fail
at once. Models then load on a worker thread while the server already answers: /healthz says the process
runs, /readyz answers 503 until loading is done. An error found while loading (CUDA asked for but the
sessions fell back to CPU, an unknown VAE_DEFAULT_MODEL) is logged, kept for /readyz, and stops the server
through `app.state.on_fatal` (python -m service then exits with status 1).

Errors: the core's ServiceErrors, request validation errors and the framework's own (404, 405 with Allow) are
answered in the shape of the protocol the path belongs to: the VAE API's {"error": {status, field, message,
limit}} or the Open Inference Protocol's {"error": message}.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import admin, pages, v2
from service import vae_responses as vae
from service.access import install_access
from service.core import Core
from service.errors import ServiceError
from service.middleware import HttpMiddleware
from service.registry import StartupError, check_configuration
from service.reload import Reloader
from service.runtime import tune_interpreter
from service.settings import Settings
from service.vae_api import add_inference_routes
from service.vae_api import router as vae_router
from service.vae_requests import ApiModels

log = logging.getLogger("service")
DESCRIPTION = (
    "Variational autoencoders (Prince, Understanding Deep Learning, ch. 17) over ONNX Runtime: encode images to "
    "latent codes, decode and sample images, score how likely an image is. Two protocols over the same models: "
    "the VAE API (options in the query string; errors {\"error\": {status, field, message, limit}}) and the Open "
    "Inference Protocol v2 under /v2 (the KServe and Triton REST API; errors {\"error\": message}).")


def create_app(settings: Settings | None = None, dependencies: Sequence[params.Depends] = (),
               wait_for_models: bool = False) -> FastAPI:
    """The app; `dependencies` run for every route (FastAPI's app-level dependencies), inference routes included.
    `wait_for_models`: start-up ends only once the models are loaded, and fails (StartupError) if they cannot be,
    for hosts that route to an app as soon as its start-up is done (Ray Serve: deploy/ray/app.py)."""
    settings = settings or Settings()
    core = Core(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_configuration(settings)  # StartupError: the server does not start, with this message
        tune_interpreter(settings)
        loader = asyncio.create_task(load(core, app))
        if wait_for_models:
            await asyncio.wait([loader])
            if core.startup_error is not None:
                raise StartupError(core.startup_error)
        watcher = asyncio.create_task(app.state.reloader.watch(settings.reload_interval_s))  # returns at once for 0
        yield
        watcher.cancel()
        loader.cancel()
        core.close()

    telemetry: TelemetryConfig | None = (None if settings.opentelemetry else
                                         {"tracing": False, "metrics": False, "logs": False})
    app = FastAPI(title="VAE service", version="0.3.0", description=DESCRIPTION, lifespan=lifespan,
                  telemetry=telemetry, dependencies=list(dependencies),
                  docs_url=None, redoc_url=None)  # service/pages.py serves both, with local assets
    app.state.core, app.state.api, app.state.on_fatal = core, ApiModels(settings), None
    app.state.reloader = Reloader(core)  # one per app: POST /admin/reload and the watcher share its lock
    add_inference_routes(app, app.state.api, lean=settings.lean_routes)  # first: the router tries routes in order
    app.include_router(vae_router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    pages.add_pages(app)  # /console, / and /docs, /redoc: static pages that work offline
    install_error_handlers(app)
    install_access(app, settings)  # CORS, keys and limits, before any work
    app.add_middleware(HttpMiddleware, core=core)  # added last, so outermost: every answer, refusals too, passes it
    return app


async def load(core: Core, app: FastAPI) -> None:
    try:
        await core.load()
    except StartupError as exc:
        log.critical("start-up failed: %s", exc)
        on_fatal: Callable[[], None] | None = app.state.on_fatal
        if on_fatal is not None:
            on_fatal()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return (v2 if v2.is_v2(request.url.path) else vae).service_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return (v2 if v2.is_v2(request.url.path) else vae).validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return (v2 if v2.is_v2(request.url.path) else vae).http_error(exc)
