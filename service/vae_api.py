"""The VAE API: thin routes over the service core (service/core.py). Each parses (a dependency of
service/vae_requests.py), calls one use case, and renders (service/vae_responses.py).

`router` holds the routes that depend on nothing but the core; `add_inference_routes(app, api)` adds the
inference routes, whose option and body models are bound to the app's settings (their limits are settings),
to each app. Every status code an operation answers is in its OpenAPI `responses`, with its error model.

No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name the app's
dependencies, when they are defined.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST

from service import vae_responses as render
from service.core import MAX_SEED, Images
from service.deps import CoreDep
from service.errors import NotFound
from service.options import (
    DecodeOptions,
    EncodeOptions,
    InterpolateOptions,
    LogLikelihoodOptions,
    ReconstructOptions,
    ResynthesizeOptions,
    SampleOptions,
)
from service.routing import CallRoute
from service.schemas import (
    EncodeResponse,
    ErrorResponse,
    Health,
    ImagesResponse,
    LogLikelihoodResponse,
    ModelInfo,
    ModelsResponse,
    Payload,
    Ready,
)
from service.vae_requests import DEPRECATION, ApiModels, Call

ERRORS = {400: "malformed body", 404: "unknown model", 413: "request body or image over a size limit",
          415: "unsupported content type or image format", 422: "invalid input or option",
          503: "models still loading, start-up failed, shutting down, or a bound on work reached (Retry-After)",
          401: "no valid API key (when VAE_API_KEYS_FILE is set)", 403: "the API key's role may not use this route",
          429: "over the request rate of the key or address (when VAE_RATE_LIMIT is set; Retry-After, RateLimit-*)"}
ACCESS_ERRORS = (401, 403, 429)  # any route but the health checks, when keys or rate limits are on
ANSWER_HEADERS = {
    "X-Seed": {"description": "the seed of the randomness this answer used (draws, noise, samples)",
               "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED}},
    **{name: {"description": "present when a JSON body carried options (deprecated: send them in the query)",
              "schema": {"type": "string"}} for name in DEPRECATION}}
IMAGE_ROUTE_ERRORS = (400, 404, 413, 415, 422, 503)
Endpoint = Callable[..., Awaitable[Response]]


def responses(*codes: int, png: bool = False, public: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: 200 (with the answer's headers; a PNG alternative) and the errors, as ErrorResponse;
    the access errors too unless the route is `public` (the health checks: no key, no rate limit)."""
    codes = codes if public else (*codes, *ACCESS_ERRORS)
    ok: dict[str, Any] = {"headers": ANSWER_HEADERS}
    if png:
        ok["content"] = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
        ok["description"] = "JSON, or one PNG (a grid for several images) with format=png"
    return {200: ok, **{code: {"model": ErrorResponse, "description": ERRORS[code]} for code in codes}}


def request_body(body: type[Payload], files: bool = True) -> dict[str, Any]:
    """OpenAPI requestBody of a route that reads its body itself: JSON (the body model) and, with files,
    multipart/form-data (field `images`, repeatable)."""
    schema = body.model_json_schema()
    content: dict[str, Any] = {"application/json": {"schema": schema, "examples": {
        f"example {i + 1}": {"value": example} for i, example in enumerate(schema.get("examples", []))}}}
    if files:
        images = body.model_json_schema()["properties"]["images"]
        content["multipart/form-data"] = {
            "schema": {"type": "object", "required": ["images"], "properties": {"images": {
                "type": "array", "items": {"type": "string", "format": "binary"}, "description": "PNG or JPEG files",
                **{k: v for k, v in images.items() if k in ("minItems", "maxItems")}}}},
            "encoding": {"images": {"contentType": "image/png, image/jpeg"}}}
    return {"requestBody": {"required": True, "content": content}}


router = APIRouter()


@router.get("/healthz", tags=["health"], responses=responses(public=True))
async def healthz() -> Health:
    """The process is up (models may still be loading)."""
    return Health(status="ok")


@router.get("/readyz", tags=["health"], responses=responses(503, public=True))
async def readyz(core: CoreDep) -> Ready:
    """Ready once every model folder is loaded (503 before, and from SIGTERM on)."""
    registry = core.ready_to_serve()
    return Ready(status="ready", models=sorted(registry.models), default=registry.default)


PROMETHEUS_TEXT = {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}


@router.get("/metrics", tags=["health"], response_class=Response, responses=responses() | {200: PROMETHEUS_TEXT})
async def metrics(core: CoreDep) -> Response:
    """Prometheus text: requests, latencies, errors, inference time, batching, images processed."""
    return Response(core.metrics.exposition(), media_type=core.metrics.content_type)


@router.get("/models", tags=["models"], responses=responses(503))
async def list_models(core: CoreDep) -> ModelsResponse:
    """Every loaded model's manifest and execution providers, and the folders that failed to load."""
    registry = core.ready()
    return ModelsResponse(default=registry.default, skipped=registry.skipped, models=[
        ModelInfo(name=name, default=name == registry.default, providers=m.providers, manifest=m.manifest)
        for name, m in sorted(registry.models.items())])


@router.get("/models/{name}", tags=["models"], responses=responses(404, 503) | {"4XX": {"model": ErrorResponse}})
async def model_info(name: str, core: CoreDep) -> ModelInfo:
    """One model's manifest and execution providers."""
    registry = core.ready()
    if name not in registry.models:
        raise NotFound("path.name", f"unknown model {name!r}", sorted(registry.models))
    m = registry.models[name]
    return ModelInfo(name=name, default=name == registry.default, providers=m.providers, manifest=m.manifest)


def add_inference_routes(app: FastAPI, api: ApiModels, lean: bool = True) -> None:
    """The inference routes, their options and bodies bound to the app's settings (`api`), added to the app's own
    router (so the app's dependencies are part of each route's graph) with the CallRoute class (service/routing.py;
    lean=False: FastAPI's APIRoute)."""
    route_class = CallRoute if lean else APIRoute

    def route(method: str, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            app.router.add_api_route(path, endpoint, methods=[method], route_class_override=route_class,
                                     **{"tags": ["inference"], **options})
            return endpoint
        return add

    @route("POST", "/encode", response_model=EncodeResponse, responses=responses(*IMAGE_ROUTE_ERRORS),
           openapi_extra=request_body(api.bodies["encode"]))
    async def encode(call: Annotated[Call[EncodeOptions], Depends(api.encode)]) -> Response:
        """Posterior mean and log-variance of q(z|x) per image, and `samples` draws of z; two-level models give
        every level (`levels`: z1, then z2)."""
        images = inputs(call)
        result = await call.core.encode(call.model, images.x, call.options.samples, call.options.seed)
        return render.encoding(call, images, result)

    @route("POST", "/decode", response_model=ImagesResponse, responses=responses(404, 413, 415, 422, 503, png=True),
           openapi_extra=request_body(api.bodies["decode"], files=False))
    async def decode(call: Annotated[Call[DecodeOptions], Depends(api.decode)]) -> Response:
        """Images f[z] from latent vectors; with noise=true, x ~ Pr(x|z)."""
        result = await call.core.decode(call.model, latents(call), call.options.noise, call.options.seed)
        return await render.images(call, result)

    @route("GET", "/sample", response_model=ImagesResponse, responses=responses(404, 422, 503, png=True))
    async def sample(call: Annotated[Call[SampleOptions], Depends(api.sample)]) -> Response:
        """Draw z from the prior and decode: the same seed gives the same images."""
        o = call.options
        return await render.images(call, await call.core.sample(call.model, o.n, o.seed, o.temperature, o.noise))

    @route("POST", "/loglik", response_model=LogLikelihoodResponse, responses=responses(*IMAGE_ROUTE_ERRORS),
           openapi_extra=request_body(api.bodies["loglik"]))
    async def loglik(call: Annotated[Call[LogLikelihoodOptions], Depends(api.loglik)]) -> Response:
        """Importance-sampled log Pr(x) per image (float64, log space), with the ELBO, bits/dim and ESS."""
        images = inputs(call)
        result = await call.core.log_likelihood(call.model, images.x, call.options.k, call.options.seed)
        return render.scores(call, images, result)

    @route("POST", "/reconstruct", response_model=ImagesResponse, responses=responses(*IMAGE_ROUTE_ERRORS, png=True),
           openapi_extra=request_body(api.bodies["reconstruct"]))
    async def reconstruct(call: Annotated[Call[ReconstructOptions], Depends(api.reconstruct)]) -> Response:
        """Images in, their decoded posterior means f[mu(x)] out."""
        images = inputs(call)
        return await render.images(call, await call.core.reconstruct(call.model, images.x), images)

    @route("POST", "/resynthesize", tags=["editing"], response_model=ImagesResponse,
           responses=responses(*IMAGE_ROUTE_ERRORS, png=True),
           openapi_extra=request_body(api.bodies["resynthesize"]))
    async def resynthesize(call: Annotated[Call[ResynthesizeOptions], Depends(api.resynthesize)]) -> Response:
        """Edit images along an attribute direction: decode mu(x) + strength * (mean_to - mean_from)."""
        images, o = inputs(call), call.options
        result = await call.core.resynthesize(call.model, images.x, o.strength, o.start, o.end, o.direction)
        return await render.images(call, result, images)

    @route("POST", "/interpolate", tags=["editing"], response_model=ImagesResponse,
           responses=responses(*IMAGE_ROUTE_ERRORS, png=True),
           openapi_extra=request_body(api.bodies["interpolate"]))
    async def interpolate(call: Annotated[Call[InterpolateOptions], Depends(api.interpolate)]) -> Response:
        """Decode the path between two latent vectors (JSON {"z": [z0, z1]}) or two images' posterior means."""
        ends = call.latents if call.latents is not None else inputs(call)
        result = await call.core.interpolate(call.model, ends, call.options.steps, call.options.method)
        return await render.images(call, result, call.images, ncols=call.options.steps)



def inputs(call: Call[Any]) -> Images:
    assert call.images is not None, "the route's dependency reads images"
    return call.images


def latents(call: Call[Any]) -> Any:
    assert call.latents is not None, "the route's dependency reads latent vectors"
    return call.latents
