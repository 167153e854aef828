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

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar, cast

import numpy as np
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError, create_model

from service.core import Core, Images
from service.errors import InvalidInput, MalformedInput, UnsupportedMedia
from service.manifest import NAME_PATTERN
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
    no_null,
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


@dataclass
class Call(Generic[OptT]):
    """A parsed request: the core that serves it, the model, its options, its inputs (images or latent vectors),
    and headers for the answer."""

    core: Core
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
        raw, core = await request.body(), request.app.state.core
        # A large body (arrays of numbers) takes pydantic a while, holding the GIL: on the image thread, one
        # such parse at a time, so the event loop serves other requests between them.
        return await core.workers.run_images(len(raw) > core.settings.json_inline_bytes, parse_json, raw, body)
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


def served(request: Request, name: str | None) -> tuple[Core, ServedModel]:
    """The core and the request's model, from the app's state (sub-dependencies cost every request; see
    service/routing.py)."""
    core: Core = request.app.state.core
    model = core.model(name)
    request.scope["vae_model"] = model.name  # the model label of the request's metrics
    return core, model


async def read_images(request: Request, query: Any, body: type[Payload], max_images: int) -> Call[Any]:
    """Images from multipart/form-data (field `images`) or JSON (base64 files or arrays)."""
    core, model = served(request, query.model)
    payload = await read_body(request, body, max_images)
    options, headers = merge(query, payload)
    return Call(core, model, options, await core.read_images(model, image_sources(payload), options.resize),
                headers=headers)


async def read_latents(request: Request, query: Any, body: type[Payload], max_images: int) -> Call[Any]:
    """Latent vectors from JSON {"z": [...]}."""
    core, model = served(request, query.model)
    payload = await read_body(request, body, max_images, accept_files=False)
    options, headers = merge(query, payload)
    z = core.latents(model, cast(LatentsPayload, payload).z, "body.z")
    return Call(core, model, options, latents=z, headers=headers)


async def read_ends(request: Request, query: Any, body: type[Payload], max_images: int) -> Call[Any]:
    """/interpolate: two latent vectors (JSON {"z": [...]}) or two images (multipart or JSON)."""
    core, model = served(request, query.model)
    payload = await read_body(request, body, max_images)
    options, headers = merge(query, payload)
    z = None if isinstance(payload, list) else getattr(payload, "z", None)
    if z is not None:
        return Call(core, model, options, latents=core.latents(model, z, "body.z"), headers=headers)
    return Call(core, model, options, await core.read_images(model, image_sources(payload), options.resize),
                headers=headers)


async def read_query(request: Request, query: Any) -> Call[Any]:
    """Options alone."""
    core, model = served(request, query.model)
    return Call(core, model, query)


class Reader(Generic[OptT]):
    """A route's dependency: its request read into a Call. FastAPI sees the signature (request, query), `query`
    being the route's query model (its options and `model`) bound to the app's settings; service/routing.py
    awaits the same reader with the same model."""

    def __init__(self, query: type[OptT], read: Callable[..., Awaitable[Call[Any]]], **bound: Any):
        self.query, self.read = query, functools.partial(read, **bound)
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
             inspect.Parameter("query", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[query, Query()])],
            return_annotation=Call)

    async def __call__(self, *, request: Request, query: OptT) -> Call[OptT]:
        return await self.read(request, query)


def with_model(options: type[OptT]) -> type[OptT]:
    """The query model of a route: its options and the model to use."""
    return cast(type[OptT], create_model(options.__name__, __base__=options, __doc__=options.__doc__, model=(
        Annotated[str | None, Field(pattern=NAME_PATTERN, json_schema_extra=no_null)],
        Field(None, description="model name (default: the service's default model)"))))


class ApiModels:
    """The app's request models and route dependencies, bound to its settings; `bodies[route]` is each route's
    JSON body model, for its OpenAPI."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.bodies: dict[str, type[Payload]] = {}
        self.encode = self.reader("encode", EncodeOptions, ImagesPayload)
        self.loglik = self.reader("loglik", LogLikelihoodOptions, ImagesPayload)
        self.reconstruct = self.reader("reconstruct", ReconstructOptions, ImagesPayload)
        self.resynthesize = self.reader("resynthesize", ResynthesizeOptions, ImagesPayload)
        self.decode = self.reader("decode", DecodeOptions, LatentsPayload, read_latents)
        self.interpolate = self.reader("interpolate", InterpolateOptions, InterpolatePayload, read_ends)
        self.sample = Reader(bound(with_model(SampleOptions), settings), read_query)
        self.loglik_options = bound(LogLikelihoodOptions, settings)  # also the v2 protocol's `parameters`

    def reader(self, route: str, options: type[OptT], payload: type[Payload],
               read: Callable[..., Awaitable[Call[Any]]] = read_images) -> Reader[OptT]:
        """The route's dependency: its query model and JSON body model, bound to the settings, and how to read."""
        body = self.bodies[route] = bound(request_body(payload, options), self.settings)
        return Reader(bound(with_model(options), self.settings), read, body=body, max_images=self.settings.max_images)
