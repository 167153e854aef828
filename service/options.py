"""The options of each use case: one pydantic model per route, so each option has one declared place and one
validator.

The same model validates an option wherever it arrives: the VAE API's query string (`Annotated[Model,
Query()]`), a JSON body's deprecated copy of it (service/schemas.py), and the Open Inference Protocol's
request `parameters` (service/v2.py); and it writes the option into the OpenAPI document. Types are strict
where the wire has types: in JSON a boolean is not a number and a string is not a boolean; in a query
string, where everything is text, booleans are exactly `true` or `false`.

Some bounds are settings (VAE_MAX_K, VAE_MAX_SAMPLES, ...): those fields carry a `Limit` marker, and
`bound(Model, settings)` makes the app's subclass with the live bounds, so what is validated and what
/docs shows are the limits the server enforces.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, create_model, model_validator

from service.core import MAX_SEED, Interpolation
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Limit:
    """A bound that is a setting, written where the bound goes: `Annotated[int, Limit("max_k")]`.
    kind "max": at most the setting; "abs": within plus or minus it; "length": at most that many items.
    `default` names a setting that is the field's default (top-level fields only)."""

    setting: str
    kind: Literal["max", "abs", "length"] = "max"
    default: str | None = None

    def constraints(self, settings: Settings) -> list[Any]:
        value = getattr(settings, self.setting)
        if self.kind == "length":
            return [annotated_types.MaxLen(value)]
        return [annotated_types.Le(value)] + ([annotated_types.Ge(-value)] if self.kind == "abs" else [])


def boolean(value: Any, info: ValidationInfo) -> Any:
    """Query strings (validated in Python mode) carry booleans as text: exactly `true` or `false`. JSON values
    pass on to the strict check, where a string is not a boolean."""
    if isinstance(value, str) and info.mode == "python":
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


def no_null(schema: dict[str, Any]) -> None:
    """For fields that may be left out but are never null (None is their default, not a value a client sends;
    see Options.normalize): publish the schema of the value alone."""
    variants = [v for v in schema.pop("anyOf", []) if v.get("type") != "null"]
    if len(variants) == 1:
        schema.update(variants[0])
    elif variants:
        schema["anyOf"] = variants


Bool = Annotated[bool, BeforeValidator(boolean)]
Seed = Annotated[int | None, Field(ge=0, le=MAX_SEED, json_schema_extra=no_null)]
Name = Annotated[str | None, Field(min_length=1, max_length=200, json_schema_extra=no_null)]
Format = Literal["json", "png"]  # of image responses: JSON with base64 PNGs, or one PNG (a grid for several)


class Options(BaseModel):
    # Unknown query parameters are ignored, as FastAPI does; no option is infinite or NaN.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def normalize(cls, data: Any) -> Any:
        """An option left out takes its default; `null` is not a value of any option. JSON Schema's integers include
        numbers with a zero fraction (5.0): those are taken as integers (booleans and other numbers are refused)."""
        if not isinstance(data, dict):
            return data
        if nulls := sorted(str(k) for k, v in data.items() if v is None):
            raise ValueError(f"null is not a value of {', '.join(nulls)}: leave the option out instead")
        integers = integer_fields(cls)
        return {k: int(v) if k in integers and type(v) is float and v.is_integer() else v for k, v in data.items()}


class Resized(Options):
    resize: Bool = Field(True, description="convert images to the model's channels and size (false: a size "
                         "mismatch is a 422)")


class Seeded(Options):
    seed: Seed = Field(None, description="random seed: the same seed, the same result; when none is given a fresh "
                       "one is chosen and returned")


class Rendered(Options):
    format: Format = Field("json", description="json (base64 PNGs) or png (one image; a grid for several)")
    include_arrays: Bool = Field(False, description="also return the raw values in JSON")


class EncodeOptions(Resized, Seeded):
    samples: Annotated[int, Field(ge=0, description="draws z = mu + sigma * eps per image"),
                       Limit("max_encode_samples")] = 0


class LogLikelihoodOptions(Resized, Seeded):
    k: Annotated[int, Field(ge=1, description="importance samples per image (default: VAE_DEFAULT_K)"),
                 Limit("max_k", default="default_k")] = 1000


class DecodeOptions(Seeded, Rendered):
    noise: Bool = Field(False, description="draw x ~ Pr(x|z) instead of returning its mean f[z]")


class SampleOptions(Seeded, Rendered):
    n: Annotated[int, Field(ge=1, description="number of images"), Limit("max_samples")] = 16
    temperature: Annotated[float, Field(gt=0, description="scale of the prior's noise: z ~ Norm[0, t^2 I]"),
                           Limit("max_temperature")] = 1.0
    noise: Bool = Field(False, description="draw x ~ Pr(x|z) instead of returning its mean f[z]")


class ReconstructOptions(Resized, Rendered):
    pass


class ResynthesizeOptions(Resized, Rendered):
    # Examples: the shipped default model's attributes (GET /models/{name} lists each model's).
    start: Name = Field(None, alias="from", description="attribute to move away from", examples=["sneaker"])
    end: Name = Field(None, alias="to", description="attribute to move towards", examples=["ankle boot"])
    direction: Name = Field(None, description="a named direction of the model instead of from and to",
                            examples=["sneakers-to-boots"])
    strength: Annotated[float, Field(description="multiple of the direction to add"),
                        Limit("max_strength", "abs")] = 1.0


class InterpolateOptions(Resized, Rendered):
    steps: Annotated[int, Field(ge=2, description="points on the path, both ends included"),
                     Limit("max_steps")] = 8
    method: Interpolation = Field("linear", description="linear, or slerp (along the great circle)")


@functools.cache
def integer_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (as sent) of the model's integer fields."""
    return frozenset(info.alias or name for name, info in model.model_fields.items()
                     if info.annotation is int or int in get_args(info.annotation))


def bound(model: type[M], settings: Settings) -> type[M]:
    """`model` with every Limit replaced by the live settings' bound (and Limit defaults applied): the app's
    own subclass, which validates and writes the OpenAPI with the limits the server enforces."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        limit = next((m for m in info.metadata if isinstance(m, Limit)), None)
        annotation = resolve(info.rebuild_annotation(), settings)
        if limit is None and annotation == info.rebuild_annotation():
            continue
        default = getattr(settings, limit.default) if limit is not None and limit.default else info.default
        if limit is not None and limit.kind != "length":  # a default within the live bound (small limits in tests)
            bound_value = getattr(settings, limit.setting)
            default = max(-bound_value, min(default, bound_value)) if limit.kind == "abs" else min(default, bound_value)
        fields[name] = (annotation, Field(default, alias=info.alias, description=info.description,
                                          json_schema_extra=info.json_schema_extra, examples=info.examples))
    return cast(type[M], create_model(model.__name__, __base__=model, __doc__=model.__doc__, **fields))


def resolve(annotation: Any, settings: Settings) -> Any:
    """The annotation with each Limit, at any depth, replaced by its constraints."""
    args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        metadata = [c for m in args[1:] for c in (m.constraints(settings) if isinstance(m, Limit) else [m])]
        return Annotated[(resolve(args[0], settings), *metadata)]
    if not args or get_origin(annotation) is Literal:
        return annotation
    resolved = tuple(resolve(a, settings) for a in args)
    if resolved == args:
        return annotation
    origin = get_origin(annotation)
    return Union[resolved] if origin in (Union, UnionType) else origin[resolved]  # noqa: UP007
