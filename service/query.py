"""Query options of the inference routes: one pydantic model per route, validated in one call.

Why not FastAPI's declared parameters: FastAPI solves each declared query parameter and dependency on
every request, a quarter of /encode's event-loop time for its four options (py-spy; README "Why this
server stack"). So /encode, /decode, /sample and /loglik take the Request and validate its query string
into their model here, and `openapi_parameters` writes the same fields, with the live Settings' limits,
into the OpenAPI document: /docs lists the options and limits as before. A bad value is the usual 422
naming `query.<option>` and the limit.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ApiError
from service.settings import Settings

MAX_SEED = 2**63 - 1
Format = Literal["json", "png"]  # of image responses: JSON with base64 PNGs, or one PNG (a grid for several)
Q = TypeVar("Q", bound="QueryOptions")


class QueryOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown options are ignored, as FastAPI does
    # option -> the Settings field that is its upper limit (the limit is the live setting, not a constant)
    limits: ClassVar[dict[str, str]] = {}

    model: str | None = Field(None, description="model name (default: the service's default)")


class EncodeQuery(QueryOptions):
    limits: ClassVar[dict[str, str]] = {"samples": "max_encode_samples"}
    resize: bool | None = Field(None, description="convert images to the model's size (false: a mismatch is 422)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed; the same seed, the same result")
    samples: int | None = Field(None, ge=0, description="z draws per image")


class LogLikelihoodQuery(QueryOptions):
    limits: ClassVar[dict[str, str]] = {"k": "max_k"}
    resize: bool | None = Field(None, description="convert images to the model's size (false: a mismatch is 422)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed; the same seed, the same result")
    k: int | None = Field(None, ge=1, description="importance samples per image (default: VAE_DEFAULT_K)")


class DecodeQuery(QueryOptions):
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed; the same seed, the same result")
    noise: bool | None = Field(None, description="add the likelihood's noise (sigma)")
    format: Format | None = Field(None, description="json (base64 PNGs) or png (a grid for several)")
    include_arrays: bool | None = Field(None, description="also return the raw values in JSON")


class SampleQuery(QueryOptions):
    limits: ClassVar[dict[str, str]] = {"n": "max_samples", "temperature": "max_temperature"}
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed; the same seed, the same images")
    n: int = Field(16, ge=1, description="number of images")
    temperature: float = Field(1.0, gt=0, description="prior scale: z ~ Norm[0, t^2 I]")
    noise: bool = Field(False, description="add the likelihood's noise (sigma)")
    format: Format = Field("json", description="json or png (a grid)")
    include_arrays: bool = Field(False, description="also return raw values")


def parse_query(request: Request, options: type[Q], settings: Settings) -> Q:
    """The request's query string as `options`; 422 for a bad value, naming query.<option> and the limit."""
    if not request.scope["query_string"]:  # most requests: no options, the defaults validated once
        return _defaults(options)
    try:
        parsed = options.model_validate(dict(request.query_params))
    except ValidationError as exc:  # the app's handler formats it like any FastAPI validation error
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]) from exc
    for name, setting in options.limits.items():
        value, limit = getattr(parsed, name), getattr(settings, setting)
        if value is not None and value > limit:
            raise ApiError(422, f"query.{name}", f"Input should be less than or equal to {limit}", limit)
    return parsed


@functools.cache
def _defaults(options: type[Q]) -> Q:
    return options()  # defaults are within every limit; routes only read the options


def openapi_parameters(options: type[QueryOptions], settings: Settings) -> list[dict[str, Any]]:
    """OpenAPI `parameters` for the options, their upper limits taken from `settings`."""
    schema = options.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        if name in options.limits:
            bound = getattr(settings, options.limits[name])
            for variant in prop.get("anyOf", [prop]):
                if variant.get("type") in ("integer", "number"):
                    variant["maximum"] = bound
        params.append({"name": name, "in": "query", "required": False, "schema": prop, "description": description})
    return params
