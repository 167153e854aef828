"""The VAE API's JSON bodies: requests (images, latent vectors) and responses, with the examples /docs shows.

Request sizes that are settings carry Limit markers (service/options.py); the app binds them. A route's JSON
body is its payload plus, for one more release, its options (`request_body`): the query is their place now,
and a body that carries them is answered with a Deprecation header (CHANGELOG.md).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic_core import to_json

from service.manifest import Manifest
from service.options import Limit, Options, no_null

# Fashion-MNIST test image 0 (an ankle boot), 28x28 grey PNG: docs/example-ankle-boot.png.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAABUElEQVR42t3Su0rDYBgG4Pf78ydpDk0roQcVPAylaJFOoljciu7i"
    "4uCiixfgfQkOTl6Bo5Pgoqhoiya2aWqb/AcHQdA70G98H953+oB/fQYBNhoA+xETw/y+JzUwxd5vhMJ25xgAqocJwH8OivWVXuMs"
    "cu7D4PFXkwlvnwpFYtTKY/6NBEYwFE56L06hJ1WaWYH3hQQNpQ2Jg/rLqPzWz7kJ5jW+UINxgsRR+yEsO8OiGueksQsOMGhSCpjb"
    "c259O8y0CzmVqeqAG1IBGpWl5mw2LAemrRbN91yxDyNpcYnaouc5y24+YiVHuOOp9VxyY38mrYcc3TlRMaRI/DrZMfONdDSoArFy"
    "bMF3jm+eE5YZlFiqSI4y67VViyF1J6M+v9pc60AkUTSwKGy6gW5f33VtDfE0LBIAf6O5VQk80iq6ubyYAOcLr0kipqd/65k+AWKC"
    "ff9NOm1OAAAAAElFTkSuQmCC"
)

# --- requests ------------------------------------------------------------------------------------------------

Unit = Annotated[float, Field(ge=0, le=1)]
Matrix = Annotated[list[Annotated[list[Unit], Field(min_length=1)]], Field(min_length=1)]
# An array's shape tag appears in validation errors' locations; error fields leave such tags out
# (service/vae_api.py `field_name`: location parts with a space).
ARRAY_SHAPES = ("H x W", "1 x H x W", "3 x H x W")


def array_shape(value: Any) -> str | None:
    """Which shape an image array claims: a list of numbers' rows, or C such lists (C = 1 or 3)."""
    if isinstance(value, list) and value and isinstance(value[0], list) and value[0] and \
            isinstance(value[0][0], list):
        return f"{len(value)} x H x W" if len(value) in (1, 3) else None
    return "H x W"


ImageArray = Annotated[
    Annotated[Matrix, Tag("H x W")]
    | Annotated[list[Matrix], Field(min_length=1, max_length=1), Tag("1 x H x W")]
    | Annotated[list[Matrix], Field(min_length=3, max_length=3), Tag("3 x H x W")],
    Discriminator(array_shape, custom_error_type="array_shape",
                  custom_error_message="an image array is H x W, or C x H x W with C = 1 or 3"),
]
Base64Image = Annotated[str, Field(min_length=1, json_schema_extra={"format": "byte"})]
Images = Annotated[list[Base64Image] | None, Field(min_length=1, json_schema_extra=no_null,
                                                   description="base64-encoded PNG or JPEG files",
                                                   examples=[[EXAMPLE_PNG_BASE64]]),
                   Limit("max_images", "length")]
Arrays = Annotated[list[ImageArray] | None, Field(min_length=1, json_schema_extra=no_null,
                                                  description="values in [0, 1], each H x W or C x H x W (C = 1 or 3)"),
                   Limit("max_images", "length")]
Coordinate = Annotated[float, Limit("max_latent_abs", "abs")]
LatentVector = Annotated[list[Coordinate], Field(min_length=1, description="the model's latent size")]


def exactly_one(*fields: str) -> dict[str, Any]:
    return {"oneOf": [{"required": [f]} for f in fields]}


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    one_of: ClassVar[tuple[str, ...]] = ()  # a body carries exactly one of these fields (schema: oneOf)

    @model_validator(mode="after")
    def one_form(self) -> Payload:
        given = [f for f in self.one_of if getattr(self, f) is not None]
        if self.one_of and len(given) != 1:
            raise ValueError(f"send exactly one of {', '.join(repr(f) for f in self.one_of)}")
        return self


class ImagesPayload(Payload):
    """Images in JSON: base64 files, or arrays of values used as they are."""

    model_config = ConfigDict(json_schema_extra=exactly_one("images", "arrays") | {"examples": [
        {"images": [EXAMPLE_PNG_BASE64]}, {"arrays": [[[0.0, 0.5], [1.0, 0.25]]]}]})
    one_of = ("images", "arrays")
    images: Images = None
    arrays: Arrays = None


class LatentsPayload(Payload):
    model_config = ConfigDict(json_schema_extra={"examples": [{"z": [[0.0] * 32]}]})
    z: Annotated[list[LatentVector], Field(min_length=1, description="latent vectors of the decoder's level"),
                 Limit("max_images", "length")]


class InterpolatePayload(Payload):
    """The two ends of the path: latent vectors, or two images whose posterior means are the ends."""

    model_config = ConfigDict(json_schema_extra=exactly_one("z", "images", "arrays") | {"examples": [
        {"z": [[-1.0] * 32, [1.0] * 32]}]})
    one_of = ("z", "images", "arrays")
    z: Annotated[list[LatentVector] | None, Field(min_length=2, max_length=2, json_schema_extra=no_null,
                                                  description="the two end points")] = None
    images: Annotated[list[Base64Image] | None, Field(min_length=2, max_length=2, json_schema_extra=no_null,
                                                      description="two base64-encoded PNG or JPEG files")] = None
    arrays: Annotated[list[ImageArray] | None, Field(min_length=2, max_length=2, json_schema_extra=no_null,
                                                     description="two arrays of values in [0, 1]")] = None


def request_body(payload: type[Payload], options: type[Options]) -> type[Payload]:
    """A route's JSON body: the payload, plus the route's options, still accepted in the body for one release
    and marked deprecated in the schema. The same fields, so the same validators, as the query's."""
    deprecated = {info.alias or name for name, info in options.model_fields.items()}

    def schema_extra(schema: dict[str, Any]) -> None:
        extra = payload.model_config.get("json_schema_extra")
        schema.update(extra if isinstance(extra, dict) else {})
        for name, prop in schema.get("properties", {}).items():
            if name in deprecated:
                prop["deprecated"] = True

    body = type(payload.__name__.replace("Payload", "Body"), (payload, options), {
        "__doc__": payload.__doc__,
        "model_config": ConfigDict(extra="forbid", json_schema_extra=schema_extra)})
    return body


# --- responses -----------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    status: int
    field: str | None = Field(description="the input or option at fault: query.<option>, body.<field>, "
                              "images[i], arrays[i], content-type, body")
    message: str
    limit: Any = Field(None, description="the bound that was broken, where one applies")
    errors: list[dict[str, Any]] | None = Field(None, description="every validation error, when there were several")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": {
        "status": 422, "field": "query.k", "message": "Input should be less than or equal to 5000", "limit": 5000}}]})
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    models: list[str]
    default: str | None


class LatentLevel(BaseModel):
    name: str = Field(description="z1 (read by the decoder), z2 (the top level)")
    mean: list[float]
    logvar: list[float]


class EncodedImage(BaseModel):
    index: int
    mean: list[float] = Field(description="posterior mean mu of q(z|x)")
    logvar: list[float] = Field(description="posterior log-variance of q(z|x)")
    z: list[list[float]] | None = Field(None, description="draws z = mu + exp(logvar / 2) * eps, if samples > 0")
    conversion: dict[str, Any]
    levels: list[LatentLevel] | None = Field(None, description="two-level models: q(z1|x) and q(z2|x)")


class EncodeResponse(BaseModel):
    model: str
    latent_dim: int
    seed: int | None = None
    results: list[EncodedImage]


def encode_response_json(model: str, levels: list[tuple[np.ndarray, np.ndarray]], draws: np.ndarray | None,
                         seed: int | None, conversions: list[dict[str, Any]]) -> bytes:
    """EncodeResponse's JSON, byte for byte (tested), built from the arrays in one pass: levels [(mu, logvar)],
    each (N, D); draws (N, S, D). Validating one EncodedImage model per image first costs more than the rest
    of the serialization (docs/performance.md)."""
    n, latent_dim = levels[0][0].shape
    flat = [(m.tolist(), v.tolist()) for m, v in levels]  # (N, D) arrays -> nested lists, once
    results = [{"index": i, "mean": flat[0][0][i], "logvar": flat[0][1][i],
                "z": None if draws is None else draws[i].tolist(), "conversion": conversions[i],
                "levels": [{"name": f"z{j + 1}", "mean": m[i], "logvar": v[i]} for j, (m, v) in enumerate(flat)]
                if len(levels) > 1 else None} for i in range(n)]
    return to_json({"model": model, "latent_dim": latent_dim, "seed": seed, "results": results})


class ImagesResponse(BaseModel):
    model: str
    seed: int | None = Field(None, description="the seed of the randomness used (noise, samples); null if none")
    z: list[list[float]] | None = Field(None, description="the latent codes decoded (/resynthesize, /interpolate)")
    shape: list[int] = Field(description="[C, H, W] of each image")
    images: list[str] = Field(description="base64-encoded PNG files")
    arrays: list[Any] | None = Field(None, description="the raw values (C x H x W), if include_arrays=true")
    conversions: list[dict[str, Any]] | None = None


class LogLikelihoodResult(BaseModel):
    index: int
    log_likelihood: float = Field(description="importance-sampled log Pr(x), nats")
    elbo: float = Field(description="mean log importance weight over the k draws: the ELBO, nats")
    bits_per_dim: float | None = Field(description="from log_likelihood, the manifest's convention")
    k: int
    log_likelihood_stderr: float = Field(description="delta-method standard error of log_likelihood, "
                                         "sqrt(1 / ESS - 1 / k), nats; an underestimate when the ESS is low")
    effective_sample_size: float = Field(description="(sum w)^2 / sum w^2 of the k importance weights")
    warning: str | None = Field(None, description="set when the effective sample size is below VAE_LOGLIK_MIN_ESS: "
                                "the estimate has not converged (raise k)")
    conversion: dict[str, Any]


class LogLikelihoodResponse(BaseModel):
    model: str
    k: int
    seed: int
    bits_per_dim_convention: str
    results: list[LogLikelihoodResult]


class ModelInfo(BaseModel):
    name: str
    default: bool
    providers: list[str]
    manifest: Manifest


class ModelsResponse(BaseModel):
    default: str | None
    models: list[ModelInfo]
    skipped: dict[str, str] = Field(description="model folders that failed to load, and why")
