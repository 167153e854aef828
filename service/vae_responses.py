"""Answering a VAE API request: results as JSON or PNG, their headers, and errors as JSON.

Every answer that used randomness says its seed, in the body and in an `X-Seed` header (PNG answers have only
the header), so it can be reproduced. Responses are serialized once by pydantic-core: returned as models,
FastAPI would validate them again and encode them through json.dumps.
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import Encoding, Generated, Images, Scores
from service.errors import (
    Forbidden,
    InvalidInput,
    MalformedInput,
    NotFound,
    Overloaded,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from service.manifest import BITS_PER_DIM_CONVENTION
from service.model import ServedModel
from service.options import Rendered
from service.schemas import (
    ImagesResponse,
    LogLikelihoodResponse,
    LogLikelihoodResult,
    encode_response_json,
)
from service.vae_requests import Call

STATUS: dict[type[ServiceError], int] = {InvalidInput: 422, MalformedInput: 400, TooLarge: 413,
                                          UnsupportedMedia: 415, NotFound: 404, Unavailable: 503,
                                          Overloaded: 503, Unauthorized: 401, Forbidden: 403, RateLimited: 429}
R = TypeVar("R", bound=Rendered)
JSON_TYPE = "application/json"
PNG_TYPE = "image/png"


def json_response(body: BaseModel | bytes, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    content = body if isinstance(body, bytes) else body.model_dump_json()
    return Response(content, status_code=status, media_type=JSON_TYPE, headers=headers)


def answer_headers(call: Call[Any], seed: int | None) -> dict[str, str]:
    return call.headers | ({"X-Seed": str(seed)} if seed is not None else {})


def encoding(call: Call[Any], images: Images, result: Encoding) -> Response:
    levels = [(q.mean, q.logvar) for q in result.levels]
    return json_response(encode_response_json(call.model.name, levels, result.draws, result.seed, images.conversions),
                         answer_headers(call, result.seed))


def scores(call: Call[Any], images: Images, result: Scores) -> Response:
    e, bpd, floor = result.estimate, result.bits_per_dim, call.core.settings.loglik_min_ess
    stderr = e.stderr
    return json_response(LogLikelihoodResponse(
        model=call.model.name, k=e.k, seed=result.seed, bits_per_dim_convention=BITS_PER_DIM_CONVENTION, results=[
            LogLikelihoodResult(index=i, log_likelihood=float(e.log_likelihood[i]), elbo=float(e.elbo[i]),
                                bits_per_dim=None if bpd is None else float(bpd[i]), k=e.k,
                                log_likelihood_stderr=float(stderr[i]),
                                effective_sample_size=float(e.effective_sample_size[i]),
                                warning=low_ess_warning(float(e.effective_sample_size[i]), floor),
                                conversion=images.conversions[i]) for i in range(len(images.x))]),
        answer_headers(call, result.seed))


def low_ess_warning(ess: float, floor: float) -> str | None:
    if ess >= floor:
        return None
    return (f"effective sample size {ess:.3g} is below {floor:g}: the estimate has not converged and its "
            "standard error is too small; raise k")


async def images(call: Call[R], result: Generated, inputs: Images | None = None, ncols: int | None = None
                 ) -> Response:
    """The images as JSON (base64 PNGs, the latent codes decoded when the use case chose them, the raw values
    with include_arrays) or, with format=png, as one PNG (a grid `ncols` wide for several)."""
    headers = answer_headers(call, result.seed)
    if call.options.format == "png":
        return Response(await call.core.png_grid(result.images, ncols), media_type=PNG_TYPE, headers=headers)
    return json_response(images_json(call.model, result, await call.core.png_files(result.images),
                                     call.options.include_arrays, inputs), headers)


def images_json(model: ServedModel, result: Generated, files: list[bytes], include_arrays: bool,
                inputs: Images | None) -> ImagesResponse:
    return ImagesResponse(
        model=model.name, seed=result.seed, z=None if result.z is None else np.round(result.z, 6).tolist(),
        shape=list(result.images.shape[1:]), images=[base64.b64encode(f).decode("ascii") for f in files],
        arrays=result.images.astype(np.float64).round(6).tolist() if include_arrays else None,  # 6 decimals printed
        conversions=None if inputs is None else inputs.conversions)


def error_response(status: int, field: str | None, message: str, limit: Any = None,
                   errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> Response:
    """{"error": {status, field, message[, limit][, errors]}}: the shape of ErrorResponse."""
    detail: dict[str, Any] = {"status": status, "field": field, "message": message}
    if limit is not None:
        detail["limit"] = limit
    if errors is not None:
        detail["errors"] = errors
    return Response(to_json({"error": detail}), status_code=status, media_type=JSON_TYPE, headers=headers)


def service_error(exc: ServiceError) -> Response:
    """A core error as the VAE API says it: options live in the query."""
    field = f"query.{exc.field}" if exc.option else exc.field
    return error_response(STATUS[type(exc)], field, exc.message, exc.limit, headers=exc.headers or None)


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """('query', 'k') -> 'query.k'; ('body', 'z', 0, 3) -> 'body.z[0][3]'. Union tags (parts with a space, such as
    an image array's "H x W") are left out."""
    out = ""
    for part in loc:
        if isinstance(part, str) and " " in part:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


LIMIT_KEYS = ("le", "lt", "ge", "gt", "max_length", "min_length")


def validation_error(exc: RequestValidationError) -> Response:
    """422 naming the first invalid field (and its bound), with every error listed."""
    errors: list[dict[str, Any]] = list(exc.errors())
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    ctx = first.get("ctx") or {}
    limit = next((ctx[k] for k in LIMIT_KEYS if k in ctx), None)
    listed = [{"field": field_name(e.get("loc", ())), "message": str(e.get("msg"))} for e in errors]
    return error_response(422, field_name(first.get("loc", ())) or "body", str(first.get("msg")), limit, listed)


def http_error(exc: StarletteHTTPException) -> Response:
    """The framework's own answers (404 for an unknown path, 405 with its Allow header) in the same shape."""
    return error_response(exc.status_code, None, str(exc.detail), headers=dict(exc.headers or {}))
