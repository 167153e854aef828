"""The HTTP routes: parse and check options, read inputs, call the inference layer in a worker thread,
return a typed response. Query limits come from the live Settings, so /docs shows the real ones.
"""


import secrets
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from service.errors import ApiError
from service.estimators import bits_per_dim
from service.images import decode_base64, grid, image_from_array, image_from_bytes, png_bytes, pngs_base64
from service.manifest import BITS_PER_DIM_CONVENTION, ImageSpec
from service.multipart import MultipartError, TooManyParts, parse_form
from service.offload import INLINE_MAX_IMAGES, INLINE_MAX_VALUES, small_inputs
from service.query import (
    MAX_SEED,
    DecodeQuery,
    EncodeQuery,
    Format,
    LogLikelihoodQuery,
    SampleQuery,
    openapi_parameters,
    parse_query,
)
from service.registry import Registry, ServedModel
from service.schemas import (
    DecodeRequest,
    EncodeResponse,
    ImagesRequest,
    ImagesResponse,
    LogLikelihoodResponse,
    LogLikelihoodResult,
    ModelInfo,
    ModelsResponse,
    encode_response_json,
)
from service.settings import Settings

FAST_ROUTES = ("/encode", "/decode", "/sample", "/loglik")  # their endpoints take the Request alone (fastlane.py)
BodyT = TypeVar("BodyT", bound=BaseModel)
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "JSON, or one PNG with format=png"}}


def vae_state(request: Request) -> Any:
    return request.app.state.vae


async def get_registry(request: Request) -> Registry:
    return registry_of(request)


def registry_of(request: Request) -> Registry:
    state = vae_state(request)
    if state.startup_error is not None:
        raise ApiError(503, None, f"start-up failed: {state.startup_error}")
    if state.registry is None:
        raise ApiError(503, None, "models are still loading")
    return state.registry


async def get_model(request: Request, registry: Annotated[Registry, Depends(get_registry)],
              model: Annotated[str | None, Query(description="model name (default: the service's default)")] = None
              ) -> ServedModel:
    return served_model(request, registry, model)


def served_model(request: Request, registry: Registry, model: str | None) -> ServedModel:
    """The model a request names (query.model), or the default; 404 naming the loaded ones."""
    served = registry.get(model)
    if served is None:
        known = sorted(registry.models)
        raise ApiError(404, "query.model", f"unknown model {model!r}; loaded: {known}" if model else
                       "no model is loaded", known)
    request.scope["vae_model"] = served.name
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]


def pick(name: str, query: Any, body: Any, default: Any, attr: str | None = None) -> tuple[Any, str]:
    """The option's value and where it came from: the query wins, then the JSON body, then the default.
    attr: the body's attribute when it differs from the option's name (`from` is `from_`)."""
    attr = attr or name
    if query is not None:
        return query, f"query.{name}"
    if body is not None and getattr(body, attr, None) is not None:
        return getattr(body, attr), f"body.{name}"
    return default, f"query.{name}"


def in_range(value: Any, field: str, lo: float, hi: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ApiError(422, field, f"must be a number from {lo} to {hi}, got {value!r}", hi)
    return value


def check_latents(rows: list[list[float]], model: ServedModel, settings: Settings) -> np.ndarray:
    """Latent vectors from a JSON body -> (N, D) float64, or a 422 naming the bad row and the limit."""
    d = model.manifest.latent_dim
    if not rows:
        raise ApiError(422, "body.z", "no latent vectors")
    if len(rows) > settings.max_images:
        raise ApiError(422, "body.z", f"{len(rows)} vectors, over the limit per request", settings.max_images)
    for i, row in enumerate(rows):
        if len(row) != d:
            raise ApiError(422, f"body.z[{i}]", f"has {len(row)} values, the model's latent size is {d}", d)
    z = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ApiError(422, "body.z", "holds NaN or infinite values")
    if np.abs(z).max() > settings.max_latent_abs:
        raise ApiError(422, "body.z", f"values must lie within +-{settings.max_latent_abs:g}", settings.max_latent_abs)
    return z


def seed_option(query: int | None, body: Any) -> int:
    """The request's seed (checked), or a fresh one, reported back so the result can be reproduced."""
    seed, field = pick("seed", query, body, None)
    if seed is None:
        return secrets.randbits(63)
    return int(in_range(seed, field, 0, MAX_SEED))


def format_option(query: str | None, body: Any) -> str:
    fmt, field = pick("format", query, body, "json")
    if fmt not in ("json", "png"):
        raise ApiError(422, field, f"must be json or png, got {fmt!r}", ["json", "png"])
    return str(fmt)


def bool_option(name: str, query: bool | None, body: Any) -> bool:
    value, field = pick(name, query, body, False)
    if not isinstance(value, bool):
        raise ApiError(422, field, f"must be true or false, got {value!r}")
    return value


def json_body(request_body: bytes, content_type: str, schema: type[BodyT]) -> BodyT:
    """A JSON body parsed into `schema`; 415 for another media type, 422 naming the bad field."""
    if content_type != "application/json":
        raise ApiError(415, "content-type", f"unsupported media type {content_type or '(none)'!r}; send "
                       "application/json", ["application/json"])
    try:
        return schema.model_validate_json(request_body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "body" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        raise ApiError(422, field, err["msg"]) from exc


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Inputs:
    x: np.ndarray  # (N, C, H, W) float32
    conversions: list[dict[str, Any]]
    body: ImagesRequest | None


async def read_inputs(request: Request, model: ServedModel, settings: Settings, resize: bool | None) -> Inputs:
    """Images from multipart/form-data (field `images`, repeatable) or JSON {"images": [...]} / {"arrays": [...]}."""
    spec = model.manifest.image
    ctype = media_type(request)
    body: ImagesRequest | None = None
    if ctype == "multipart/form-data":
        try:  # parts beyond the images allow a few other fields, which are ignored
            parts = parse_form(await request.body(), request.headers["content-type"], settings.max_images + 16)
        except TooManyParts as exc:
            raise ApiError(422, "images", f"multipart body refused: {exc}", settings.max_images) from exc
        except MultipartError as exc:
            raise ApiError(400, "images", f"multipart body refused: {exc}") from exc
        files = [p for p in parts if p.name == "images"]
        if any(f.filename is None for f in files):
            raise ApiError(422, "images", "form field images must carry files")
        raw: list[tuple[str, Any]] = [("bytes", f.data) for f in files]
    elif ctype == "application/json":
        body = json_body(await request.body(), ctype, ImagesRequest)
        if (body.images is None) == (body.arrays is None):
            raise ApiError(422, "body", 'send exactly one of "images" (base64 PNG/JPEG) or "arrays"')
        raw = ([("base64", s) for s in body.images] if body.images is not None else
               [("array", a) for a in body.arrays or []])
    else:
        raise ApiError(415, "content-type", f"unsupported media type {ctype or '(none)'!r}; send "
                       "multipart/form-data (field images) or application/json",
                       ["multipart/form-data", "application/json"])
    if not raw:
        raise ApiError(422, "images", "no images in the request")
    if len(raw) > settings.max_images:
        raise ApiError(422, "images", f"{len(raw)} images, over the limit per request", settings.max_images)
    resize_value, field = pick("resize", resize, body, True)
    if not isinstance(resize_value, bool):
        raise ApiError(422, field, f"must be true or false, got {resize_value!r}")
    # Decoding and resizing are CPU work: off the event loop unless they cost less than the hop (offload.py).
    inline = small_inputs([item for _, item in raw], spec.height * spec.width)
    x, conversions = await vae_state(request).workers.run_images(
        not inline, convert_inputs, raw, spec, resize_value, settings.max_image_pixels)
    return Inputs(x, conversions, body)


def convert_inputs(raw: list[tuple[str, Any]], spec: ImageSpec, resize: bool, max_pixels: int
                   ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(kind, payload) pairs -> model inputs (N, C, H, W) float32 and the conversion applied to each."""
    xs, conversions = [], []
    for i, (kind, item) in enumerate(raw):
        if kind == "array":
            x, conv = image_from_array(item, f"arrays[{i}]", spec, resize, max_pixels)
        else:
            data = decode_base64(item, f"images[{i}]") if kind == "base64" else item
            x, conv = image_from_bytes(data, f"images[{i}]", spec, resize, max_pixels)
        xs.append(x)
        conversions.append(conv)
    return (xs[0][None] if len(xs) == 1 else np.stack(xs)), conversions


def json_response(body: BaseModel) -> Response:
    """A response model serialized by pydantic-core in one pass. (Returned as a model, FastAPI validates it
    again and goes through json.dumps: about 4x the time for a latent vector's list of floats.)"""
    return Response(body.model_dump_json(), media_type="application/json")


async def images_response(request: Request, model: ServedModel, images: np.ndarray, fmt: str, include_arrays: bool,
                          seed: int | None, conversions: list[dict[str, Any]] | None = None,
                          ncols: int | None = None, z: np.ndarray | None = None) -> Response:
    """JSON with base64 PNGs (and the latent codes z, when given), or one PNG image; the encoding runs off the
    event loop unless it is small (offload.py)."""
    large = len(images) > INLINE_MAX_IMAGES or images.size > INLINE_MAX_VALUES
    return await vae_state(request).workers.run_images(large, encode_images, model, images, fmt, include_arrays,
                                                       seed, conversions, ncols, z)


def encode_images(model: ServedModel, images: np.ndarray, fmt: str, include_arrays: bool, seed: int | None,
                  conversions: list[dict[str, Any]] | None, ncols: int | None, z: np.ndarray | None) -> Response:
    if fmt == "png":
        return Response(png_bytes(grid(images, ncols) if len(images) > 1 else images[0]), media_type="image/png")
    return json_response(ImagesResponse(
        model=model.name, seed=seed, z=None if z is None else z.round(6).tolist(), shape=list(images.shape[1:]),
        images=pngs_base64(images), arrays=images.round(6).tolist() if include_arrays else None,
        conversions=conversions))


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter()
    s = settings
    Resize = Annotated[bool | None, Query(description="convert images to the model's size (false: a mismatch is 422)")]
    Fmt = Annotated[Format | None, Query(description="json (base64 PNGs) or png (one image, a grid for several)")]
    Arrays = Annotated[bool | None, Query(description="also return the raw values in JSON")]

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (models may still be loading)."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"])
    async def readyz(registry: Annotated[Registry, Depends(get_registry)]) -> dict[str, Any]:
        """Ready once every model folder is loaded (503 before)."""
        return {"status": "ready", "models": sorted(registry.models), "default": registry.default}

    @router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        """Prometheus text: requests, latencies, errors, inference time, images processed."""
        return Response(generate_latest(vae_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def model_info(registry: Registry, m: ServedModel) -> ModelInfo:
        return ModelInfo(name=m.name, default=m.name == registry.default, providers=m.providers, manifest=m.manifest)

    @router.get("/models", tags=["models"])
    async def list_models(registry: Annotated[Registry, Depends(get_registry)]) -> ModelsResponse:
        """Every loaded model's manifest and execution providers, and folders that failed to load."""
        return ModelsResponse(default=registry.default, skipped=registry.skipped,
                              models=[model_info(registry, m) for _, m in sorted(registry.models.items())])

    @router.get("/models/{name}", tags=["models"])
    async def get_model_info(name: str, registry: Annotated[Registry, Depends(get_registry)]) -> ModelInfo:
        """One model's manifest and providers."""
        if name not in registry.models:
            raise ApiError(404, "path.name", f"unknown model {name!r}", sorted(registry.models))
        return model_info(registry, registry.models[name])

    # The inference routes read their query options through service/query.py (one pydantic model per route).
    @router.post("/encode", tags=["inference"], response_model=EncodeResponse, openapi_extra={
        "requestBody": images_openapi_body(), "parameters": openapi_parameters(EncodeQuery, s)})
    async def encode(request: Request) -> Response:
        """Posterior mean and log-variance of q(z|x) per image (and z draws if samples > 0); two-level models
        also give every level (`levels`: z1, then z2)."""
        q = parse_query(request, EncodeQuery, s)
        model = served_model(request, registry_of(request), q.model)
        inputs = await read_inputs(request, model, s, q.resize)
        n_draws, field = pick("samples", q.samples, inputs.body, 0)
        in_range(n_draws, field, 0, s.max_encode_samples)
        seed_value = seed_option(q.seed, inputs.body) if n_draws else None
        inference = vae_state(request).inference
        levels = await inference.encode_levels_async(model, inputs.x)
        mu, logvar = levels[0]
        draws = inference.draw_latents(mu, logvar, n_draws, seed_value) if n_draws else None
        count_images(request, "/encode", model, len(mu))
        return Response(encode_response_json(model.name, levels, draws, seed_value, inputs.conversions),
                        media_type="application/json")

    @router.post("/decode", tags=["inference"], responses=PNG_RESPONSE, response_model=ImagesResponse,
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                     "schema": DecodeRequest.model_json_schema(),
                     "example": DecodeRequest.model_config["json_schema_extra"]["examples"][0]}}},  # type: ignore[index]
                     "parameters": openapi_parameters(DecodeQuery, s)})
    async def decode(request: Request) -> Response:
        """Images f[z] from latent vectors (with noise=true, x ~ Pr(x|z))."""
        q = parse_query(request, DecodeQuery, s)
        model = served_model(request, registry_of(request), q.model)
        body = json_body(await request.body(), media_type(request), DecodeRequest)
        z = check_latents(body.z, model, s)
        add_noise = bool_option("noise", q.noise, body)
        seed_value = seed_option(q.seed, body) if add_noise else None
        inference = vae_state(request).inference
        mean = await inference.decode_async(model, z)
        images = inference.observe(model, mean, seed_value) if seed_value is not None else mean
        count_images(request, "/decode", model, len(images))
        return await images_response(request, model, images, format_option(q.format, body),
                                     bool_option("include_arrays", q.include_arrays, body), seed_value)

    @router.get("/sample", tags=["inference"], responses=PNG_RESPONSE, response_model=ImagesResponse,
                openapi_extra={"parameters": openapi_parameters(SampleQuery, s)})
    async def sample(request: Request) -> Response:
        """Draw z from the prior and decode: the same seed gives the same images."""
        q = parse_query(request, SampleQuery, s)
        model = served_model(request, registry_of(request), q.model)
        seed_value = seed_option(q.seed, None)
        images = await vae_state(request).inference.sample_async(model, q.n, seed_value, q.temperature, q.noise)
        count_images(request, "/sample", model, q.n)
        return await images_response(request, model, images, q.format, q.include_arrays, seed_value)

    @router.post("/loglik", tags=["inference"], response_model=LogLikelihoodResponse, openapi_extra={
        "requestBody": images_openapi_body(), "parameters": openapi_parameters(LogLikelihoodQuery, s)})
    async def loglik(request: Request) -> Response:
        """Importance-sampled log Pr(x) per image (float64, log space), with the ELBO, bits/dim and ESS."""
        q = parse_query(request, LogLikelihoodQuery, s)
        model = served_model(request, registry_of(request), q.model)
        inputs = await read_inputs(request, model, s, q.resize)
        k_value, field = pick("k", q.k, inputs.body, s.default_k)
        in_range(k_value, field, 1, s.max_k)
        seed_value = seed_option(q.seed, inputs.body)
        state = vae_state(request)
        result = await state.workers.run(state.inference.log_likelihood, model, inputs.x, k_value, seed_value)
        bpd = bits_per_dim(result.log_likelihood, model.manifest.image)
        count_images(request, "/loglik", model, len(inputs.x))
        return json_response(LogLikelihoodResponse(model=model.name, k=k_value, seed=seed_value,
                                     bits_per_dim_convention=BITS_PER_DIM_CONVENTION, results=[
            LogLikelihoodResult(index=i, log_likelihood=float(result.log_likelihood[i]), elbo=float(result.elbo[i]),
                                bits_per_dim=None if bpd is None else float(bpd[i]), k=k_value,
                                effective_sample_size=float(result.effective_sample_size[i]),
                                conversion=inputs.conversions[i]) for i in range(len(inputs.x))]))

    @router.post("/reconstruct", tags=["inference"], responses=PNG_RESPONSE, response_model=ImagesResponse,
                 openapi_extra={"requestBody": images_openapi_body()})
    async def reconstruct(request: Request, model: ModelDep, resize: Resize = None, format: Fmt = None,
                          include_arrays: Arrays = None) -> Response:
        """Images in, the decoded posterior means f[mu(x)] out."""
        inputs = await read_inputs(request, model, s, resize)
        inference = vae_state(request).inference
        mu, _ = await inference.encode_async(model, inputs.x)
        images = await inference.decode_async(model, mu)
        count_images(request, "/reconstruct", model, len(images))
        return await images_response(request, model, images, format_option(format, inputs.body),
                               bool_option("include_arrays", include_arrays, inputs.body), None, inputs.conversions)

    return router


def count_images(request: Request, endpoint: str, model: ServedModel, n: int) -> None:
    metrics = vae_state(request).metrics
    metrics.labeled(metrics.images, endpoint, model.name).inc(n)


def images_openapi_body() -> dict[str, Any]:
    """OpenAPI for the routes that read images themselves (multipart or JSON)."""
    return {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": ImagesRequest.model_json_schema(),
                             "examples": {"base64": {"value": ImagesRequest.model_config["json_schema_extra"]
                                                     ["examples"][0]},  # type: ignore[index]
                                          "arrays": {"value": {"arrays": [[[0.0, 0.5], [1.0, 0.25]]]}}}},
    }}
