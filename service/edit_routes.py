"""Latent-space editing routes: /resynthesize (attribute directions) and /interpolate (latent paths).

Resynthesis (Prince ch. 17): z' = mu(x) + strength * (mean_to - mean_from), where mean_A is the mean
posterior latent of the images labelled A, computed at export (the manifest's `attributes`).
"""

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.errors import ApiError
from service.query import Format
from service.registry import ServedModel
from service.routes import (
    PNG_RESPONSE,
    ModelDep,
    bool_option,
    check_latents,
    count_images,
    format_option,
    images_openapi_body,
    images_response,
    in_range,
    json_body,
    media_type,
    pick,
    read_inputs,
    vae_state,
)
from service.schemas import ImagesRequest, ImagesResponse, InterpolateRequest
from service.settings import Settings

Method = Literal["linear", "slerp"]


def attribute_direction(model: ServedModel, src: str | None, dst: str | None, name: str | None) -> np.ndarray:
    """mean_to - mean_from, from `from`/`to` attribute names or a named direction."""
    spec = model.manifest.attributes
    if spec is None or not model.attributes:
        raise ApiError(422, "query.model", f"model {model.name!r} has no attributes (export it with labelled data)")
    if name is not None:
        if name not in spec.directions:
            raise ApiError(422, "query.direction", f"unknown direction {name!r}", sorted(spec.directions))
        src, dst = spec.directions[name]
    for value, field in ((src, "from"), (dst, "to")):
        if value is None:
            raise ApiError(422, f"query.{field}", "give from and to (attribute names), or direction")
        if value not in model.attributes:
            raise ApiError(422, f"query.{field}", f"unknown attribute {value!r}", spec.names)
    return model.attributes[dst] - model.attributes[src]  # type: ignore[index]


def build_edit_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["editing"])
    s = settings
    Fmt = Annotated[Format | None, Query(description="json (base64 PNGs) or png (a grid)")]
    Arrays = Annotated[bool | None, Query(description="also return the raw values in JSON")]

    @router.post("/resynthesize", responses=PNG_RESPONSE, response_model=ImagesResponse,
                 openapi_extra={"requestBody": images_openapi_body()})
    async def resynthesize(
        request: Request, model: ModelDep,
        from_: Annotated[str | None, Query(alias="from", description="attribute to move away from")] = None,
        to: Annotated[str | None, Query(description="attribute to move towards")] = None,
        direction: Annotated[str | None, Query(description="a named direction instead of from/to")] = None,
        strength: Annotated[float | None, Query(ge=-s.max_strength, le=s.max_strength,
                                                description="multiple of the direction to add (default 1)")] = None,
        resize: Annotated[bool | None, Query(description="convert images to the model's size")] = None,
        format: Fmt = None, include_arrays: Arrays = None,
    ) -> Response:
        """Edit images along an attribute direction: decode mu(x) + strength * (mean_to - mean_from)."""
        inputs = await read_inputs(request, model, s, resize)
        body = inputs.body
        vector = attribute_direction(model, pick("from", from_, body, None, "from_")[0], pick("to", to, body, None)[0],
                                     pick("direction", direction, body, None)[0])
        amount, field = pick("strength", strength, body, 1.0)
        in_range(amount, field, -s.max_strength, s.max_strength)
        inference = vae_state(request).inference
        mu, _ = await inference.encode_async(model, inputs.x)
        z = mu + float(amount) * vector[None, :]  # (N, D)
        images = await inference.decode_async(model, z)
        count_images(request, "/resynthesize", model, len(images))
        return await images_response(request, model, images, format_option(format, body),
                                     bool_option("include_arrays", include_arrays, body), None, inputs.conversions, z=z)

    @router.post("/interpolate", responses=PNG_RESPONSE, response_model=ImagesResponse,
                 openapi_extra={"requestBody": images_openapi_body()})
    async def interpolate(
        request: Request, model: ModelDep,
        steps: Annotated[int | None, Query(ge=2, le=s.max_steps, description="points on the path (default 8)")] = None,
        method: Annotated[Method | None, Query(description="linear, or slerp (spherical)")] = None,
        resize: Annotated[bool | None, Query(description="convert images to the model's size")] = None,
        format: Fmt = None, include_arrays: Arrays = None,
    ) -> Response:
        """Decode the path between two latent vectors (JSON {"z": [z0, z1]}) or two images' posterior means."""
        body: ImagesRequest | InterpolateRequest | None
        raw = await request.body()
        if media_type(request) == "application/json" and raw.lstrip().startswith(b"{") and b'"z"' in raw:
            body = json_body(raw, "application/json", InterpolateRequest)
            ends = check_latents(body.z, model, s)
            if len(ends) != 2:
                raise ApiError(422, "body.z", f"give exactly 2 latent vectors, got {len(ends)}", 2)
        else:
            inputs = await read_inputs(request, model, s, resize)
            body = inputs.body
            if len(inputs.x) != 2:
                raise ApiError(422, "images", f"give exactly 2 images, got {len(inputs.x)}", 2)
            mu, _ = await vae_state(request).inference.encode_async(model, inputs.x)
            ends = mu.astype(np.float64)
        n_steps, field = pick("steps", steps, body, 8)
        in_range(n_steps, field, 2, s.max_steps)
        how, field = pick("method", method, body, "linear")
        if how not in ("linear", "slerp"):
            raise ApiError(422, field, f"must be linear or slerp, got {how!r}", ["linear", "slerp"])
        inference = vae_state(request).inference
        z = inference.latent_path(ends[0], ends[1], int(n_steps), how)
        images = await inference.decode_async(model, z)
        count_images(request, "/interpolate", model, len(images))
        return await images_response(request, model, images, format_option(format, body),
                                     bool_option("include_arrays", include_arrays, body), None, ncols=len(images), z=z)

    return router
