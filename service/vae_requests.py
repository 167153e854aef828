"""Reading a VAE API request: its options from the query, its payload from the body, the model inputs.

Each route's dependency (an `ApiModels` attribute) is built per app from its option model and JSON body model,
both bound to the app's settings, so the limits validated and published are the live ones. Options have one
place, the query; a JSON body may still carry them for one release (validated by the same fields) and is
answered with a Deprecation header; where both give an option, the query wins.

Bodies are read here rather than declared as FastAPI body parameters: an image route takes multipart/form-data
or JSON, and JSON is validated strictly (a boolean is not a number), which FastAPI's parsing of a declared body
does not do.

No `from __future__ import annotations`: FastAPI reads the dependencies' annotations, which name the app's own
option models, when they are defined.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar, cast

import numpy as np
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.core import Images
from service.deps import CoreDep, ModelDep
from service.errors import InvalidInput, MalformedInput, UnsupportedMedia
from service.model import ServedModel
from service.multipart import MultipartError, TooManyParts, parse_form
from service.options import (
    DecodeOptions,
    EncodeOptions,
    InterpolateOptions,
    LogLikelihoodOptions,
    Options,
    ReconstructOptions,
    Resized,
    ResynthesizeOptions,
    SampleOptions,
    bound,
)
from service.schemas import ImagesPayload, InterpolatePayload, LatentsPayload, Payload, request_body
from service.settings import Settings

OptT = TypeVar("OptT", bound=Options)
ResizedT = TypeVar("ResizedT", bound=Resized)
JSON = "application/json"
MULTIPART = "multipart/form-data"
EXTRA_PARTS = 16  # form fields besides the images a multipart body may carry (they are ignored)
# RFC 9745: options in a JSON body are deprecated since 2026-12-03T00:00:00Z (the Unix time below).
DEPRECATION = {"Deprecation": "@1796256000"}
Dependency = Callable[..., Awaitable[Any]]


@dataclass
class Call(Generic[OptT]):
    """A parsed request: the model, its options, its inputs (images or latent vectors), headers for the answer."""

    model: ServedModel
    options: OptT
    images: Images | None = None
    latents: np.ndarray | None = None  # (N, D) latent vectors of the decoder's level
    headers: dict[str, str] = field(default_factory=dict)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(raw: bytes, body: type[Payload]) -> Payload:
    """A JSON body, validated strictly; errors name body.<field>."""
    try:
        return body.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


async def read_body(request: Request, body: type[Payload], max_images: int, accept_files: bool = True
                    ) -> Payload | list[bytes]:
    """The JSON payload, or (where files are accepted) the image files of a multipart body's field `images`."""
    kind = media_type(request)
    if kind == JSON:
        return parse_json(await request.body(), body)
    accepted = [MULTIPART, JSON] if accept_files else [JSON]
    if kind != MULTIPART or not accept_files:
        raise UnsupportedMedia("content-type", f"unsupported media type {kind or '(none)'!r}; send "
                               + " or ".join(accepted), accepted)
    try:
        parts = parse_form(await request.body(), request.headers["content-type"], max_images + EXTRA_PARTS)
    except TooManyParts as exc:
        raise InvalidInput("images", f"multipart body refused: {exc}", max_images) from exc
    except MultipartError as exc:
        raise MalformedInput("images", f"multipart body refused: {exc}") from exc
    files = [p for p in parts if p.name == "images"]
    if any(f.filename is None for f in files):
        raise InvalidInput("images", "form field images must carry files")
    return [f.data for f in files]


def merge(query: OptT, payload: Payload | list[bytes]) -> tuple[OptT, dict[str, str]]:
    """The query's options completed by those a JSON body carries (deprecated), and the headers that say so."""
    if isinstance(payload, list):
        return query, {}
    in_body = payload.model_fields_set & set(type(query).model_fields)
    if not in_body:
        return query, {}
    return query.model_copy(update={name: getattr(payload, name) for name in in_body - query.model_fields_set}), \
        DEPRECATION


def image_sources(payload: Payload | list[bytes]) -> list[Any]:
    """Image files, base64 strings or arrays: whatever form the request's images came in."""
    if isinstance(payload, list):
        return payload
    images = getattr(payload, "images", None)
    return images if images is not None else getattr(payload, "arrays", None) or []


def images_call(options: type[ResizedT], body: type[Payload], max_images: int) -> Dependency:
    """A route that takes images (multipart or JSON) and `options`."""
    async def call(request: Request, core: CoreDep, model: ModelDep,
                   query: Annotated[options, Query()]) -> Call[ResizedT]:  # type: ignore[valid-type]
        payload = await read_body(request, body, max_images)
        merged, headers = merge(cast(ResizedT, query), payload)
        return Call(model, merged, await core.read_images(model, image_sources(payload), merged.resize),
                    headers=headers)
    return call


def latents_call(options: type[OptT], body: type[Payload], max_images: int) -> Dependency:
    """A route that takes latent vectors (JSON {"z": [...]}) and `options`."""
    async def call(request: Request, core: CoreDep, model: ModelDep,
                   query: Annotated[options, Query()]) -> Call[OptT]:  # type: ignore[valid-type]
        payload = await read_body(request, body, max_images, accept_files=False)
        merged, headers = merge(cast(OptT, query), payload)
        return Call(model, merged, latents=core.latents(model, cast(LatentsPayload, payload).z, "body.z"),
                    headers=headers)
    return call


def ends_call(options: type[ResizedT], body: type[Payload], max_images: int) -> Dependency:
    """/interpolate: two latent vectors (JSON {"z": [...]}) or two images (multipart or JSON), and `options`."""
    async def call(request: Request, core: CoreDep, model: ModelDep,
                   query: Annotated[options, Query()]) -> Call[ResizedT]:  # type: ignore[valid-type]
        payload = await read_body(request, body, max_images)
        merged, headers = merge(cast(ResizedT, query), payload)
        z = None if isinstance(payload, list) else getattr(payload, "z", None)
        if z is not None:
            return Call(model, merged, latents=core.latents(model, z, "body.z"), headers=headers)
        return Call(model, merged, await core.read_images(model, image_sources(payload), merged.resize),
                    headers=headers)
    return call


def options_call(options: type[OptT]) -> Dependency:
    """A route that takes only `options`."""
    async def call(model: ModelDep, query: Annotated[options, Query()]) -> Call[OptT]:  # type: ignore[valid-type]
        return Call(model, cast(OptT, query))
    return call


class ApiModels:
    """The app's request models and route dependencies, bound to its settings; `bodies[route]` is each route's
    JSON body model, for its OpenAPI."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.bodies: dict[str, type[Payload]] = {}
        self.encode = images_call(*self.bind("encode", EncodeOptions, ImagesPayload), settings.max_images)
        self.loglik = images_call(*self.bind("loglik", LogLikelihoodOptions, ImagesPayload), settings.max_images)
        self.reconstruct = images_call(*self.bind("reconstruct", ReconstructOptions, ImagesPayload),
                                       settings.max_images)
        self.resynthesize = images_call(*self.bind("resynthesize", ResynthesizeOptions, ImagesPayload),
                                        settings.max_images)
        self.decode = latents_call(*self.bind("decode", DecodeOptions, LatentsPayload), settings.max_images)
        self.interpolate = ends_call(*self.bind("interpolate", InterpolateOptions, InterpolatePayload),
                                     settings.max_images)
        self.sample = options_call(bound(SampleOptions, settings))
        self.loglik_options = bound(LogLikelihoodOptions, settings)  # also the v2 protocol's `parameters`

    def bind(self, route: str, options: type[OptT], payload: type[Payload]) -> tuple[type[OptT], type[Payload]]:
        """The route's option model and JSON body model, bounded by the settings."""
        self.bodies[route] = bound(request_body(payload, options), self.settings)
        return bound(options, self.settings), self.bodies[route]
