"""Every call of the client as an Operation (calls.py): the requests it makes, split within the per-request
limits, and the result built from their answers. No I/O here: Client and AsyncClient run the same operations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from numpy.typing import ArrayLike

from vae_client.calls import Call, Operation, image_call, json_list, query
from vae_client.chunks import counts, plan, request_seeds
from vae_client.errors import BadRequestError, NotFoundError, UnexpectedResponseError
from vae_client.images import ImageInputs, Part, image_parts
from vae_client.limits import DEFAULT_MAX_REQUEST_BYTES, Limits, openapi_limits
from vae_client.results import EncodeResult, Images, LogLikResult, ModelInfo, ModelList

Method = Literal["linear", "slerp"]


class Operations:
    """The operations of one client, and what it knows of the service's limits (read once, when first needed).
    `max_images`, `max_samples`: limits to use instead of the service's; `max_request_bytes`: the body limit."""

    def __init__(self, max_images: int | None = None, max_samples: int | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        for name, value in (("max_images", max_images), ("max_samples", max_samples),
                            ("max_request_bytes", max_request_bytes)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        self.overrides = {k: v for k, v in (("max_images", max_images), ("max_samples", max_samples)) if v}
        self.max_request_bytes = max_request_bytes
        self.known: Limits | None = None

    # --- limits ----------------------------------------------------------------------------------------------

    def limits(self, needed: bool) -> Operation[Limits]:
        """The per-request limits; `needed` False (one item: nothing to split) skips asking the service."""
        if self.known is not None:
            return self.known
        if not needed:
            return Limits(max_request_bytes=self.max_request_bytes, **self.overrides)
        found: dict[str, int] = {}
        if len(self.overrides) < 2:
            try:
                found = openapi_limits((yield Call("GET", "/openapi.json")))
            except (BadRequestError, UnexpectedResponseError):
                pass  # no document to read (e.g. a proxy that does not pass it): the service's default limits
        self.known = Limits(max_request_bytes=self.max_request_bytes, **{**found, **self.overrides})
        return self.known

    def image_requests(self, path: str, images: ImageInputs, **options: Any) -> Operation[list[Any]]:
        """Posts the images, without randomness, in requests within the limits; their JSON answers, in order.
        `options`: the query's."""
        parts = image_parts(images)
        runs = yield from self.runs(parts)
        answers = []
        for run in runs:
            answers.append((yield image_call(path, query(**options), parts, run)))
        return answers

    def runs(self, parts: Sequence[Part]) -> Operation[list[list[int]]]:
        limits = yield from self.limits(len(parts) > 1)
        return plan([p.kind for p in parts], [p.size for p in parts], limits.max_images, limits.item_bytes)

    # --- calls -----------------------------------------------------------------------------------------------

    def encode(self, images: ImageInputs, model: str | None, samples: int, seed: int | None, resize: bool
               ) -> Operation[EncodeResult]:
        parts = image_parts(images)
        runs = yield from self.runs(parts)
        base, seeds = request_seeds(seed, len(runs), random=samples > 0)
        answers = []
        for run, request_seed in zip(runs, seeds, strict=True):
            params = query(model=model, samples=samples or None, seed=request_seed, resize=None if resize else False)
            answers.append(EncodeResult.from_json((yield image_call("/encode", params, parts, run))))
        return EncodeResult.join(answers, base)

    def decode(self, z: ArrayLike, model: str | None, noise: bool, seed: int | None) -> Operation[Images]:
        rows = latent_rows(z)
        limits = yield from self.limits(len(rows) > 1)
        runs = plan(["z"] * len(rows), [len(r) + 1 for r in rows], limits.max_images, limits.item_bytes)
        base, seeds = request_seeds(seed, len(runs), random=noise)
        answers = []
        for run, request_seed in zip(runs, seeds, strict=True):
            params = query(model=model, noise=noise or None, seed=request_seed, include_arrays=True)
            call = Call("POST", "/decode", params, json=json_list("z", [rows[i] for i in run]), indices=tuple(run))
            answers.append(Images.from_json((yield call)))
        return Images.join(answers, base)

    def sample(self, n: int, model: str | None, seed: int | None, temperature: float, noise: bool
               ) -> Operation[Images]:
        limits = yield from self.limits(n > 1)
        sizes = counts(n, limits.max_samples)
        base, seeds = request_seeds(seed, len(sizes), random=True)
        answers = []
        for size, request_seed in zip(sizes, seeds, strict=True):
            params = query(model=model, n=size, seed=request_seed, temperature=temperature, noise=noise or None,
                           include_arrays=True)
            answers.append(Images.from_json((yield Call("GET", "/sample", params))))
        return Images.join(answers, base)

    def reconstruct(self, images: ImageInputs, model: str | None, resize: bool) -> Operation[Images]:
        answers = yield from self.image_requests("/reconstruct", images, model=model,
                                                 resize=None if resize else False, include_arrays=True)
        return Images.join([Images.from_json(a) for a in answers], None)

    def loglik(self, images: ImageInputs, model: str | None, k: int | None, seed: int | None, resize: bool
               ) -> Operation[LogLikResult]:
        parts = image_parts(images)
        runs = yield from self.runs(parts)
        _, seeds = request_seeds(seed, len(runs), random=True, shared=True)
        answers = []
        for run, request_seed in zip(runs, seeds, strict=True):
            params = query(model=model, k=k, seed=request_seed, resize=None if resize else False)
            answers.append(LogLikResult.from_json((yield image_call("/loglik", params, parts, run))))
        return LogLikResult.join(answers)

    def resynthesize(self, images: ImageInputs, model: str | None, start: str | None, end: str | None,
                     direction: str | None, strength: float, resize: bool) -> Operation[Images]:
        answers = yield from self.image_requests("/resynthesize", images, model=model, direction=direction,
                                                 strength=strength, resize=None if resize else False,
                                                 include_arrays=True, **{"from": start, "to": end})
        return Images.join([Images.from_json(a) for a in answers], None)

    def interpolate(self, images: ImageInputs | None, z: ArrayLike | None, model: str | None, steps: int,
                    method: Method, resize: bool) -> Operation[Images]:
        if (images is None) == (z is None):
            raise ValueError("interpolate: give the two ends as images or as z, not both")
        params = query(model=model, steps=steps, method=method, resize=None if resize else False,
                       include_arrays=True)
        if z is not None:
            call = Call("POST", "/interpolate", params, json=json_list("z", latent_rows(z)))
        else:
            assert images is not None
            parts = image_parts(images)
            if len({p.kind for p in parts}) > 1:
                raise ValueError("interpolate: give both images in one form (files, PIL images or uint8 arrays; or "
                                 "float arrays), as the service takes one form per request")
            call = image_call("/interpolate", params, parts, range(len(parts)))
        return Images.from_json((yield call))

    def models(self) -> Operation[ModelList]:
        return ModelList.from_json((yield Call("GET", "/models")))

    def model(self, name: str | None) -> Operation[ModelInfo]:
        if name is None:
            listed = ModelList.from_json((yield Call("GET", "/models")))
            if listed.default is None:
                raise NotFoundError("the service has no default model: no model is loaded", status=404,
                                    field="path.name", limit=[])
            return listed[listed.default]
        return ModelInfo.from_json((yield Call("GET", f"/models/{quote(name, safe='')}")))


def latent_rows(z: ArrayLike) -> list[bytes]:
    """Latent vectors [N, D] (or one, [D]) -> each vector as JSON text, in float64 (exact for float32 input)."""
    values = np.asarray(z, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"z is [N, D] latent vectors (or one, [D]), got shape {list(values.shape)}")
    if not np.all(np.isfinite(values)):
        raise ValueError("z holds NaN or infinite values")
    return [json.dumps(row.tolist(), separators=(",", ":")).encode() for row in values]
