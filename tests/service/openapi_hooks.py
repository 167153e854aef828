"""schemathesis hooks for tests/service/test_openapi_contract.py: the rules no JSON Schema can state, applied to
schema-valid (positive) cases only, so that "valid data is accepted" tests the service and not the limits of
JSON Schema. Negative cases are left exactly as schemathesis made them.

What JSON Schema cannot say, and what a positive case gets instead:
- an image's bytes must decode as PNG or JPEG: real PNG files (base64 in JSON, bytes in multipart);
- an array must be rectangular (and of the model's size with resize=false): each image array becomes one of
  the model's size, with its number of channels;
- a latent vector's length is the chosen model's latent size: each vector resized to it;
- attribute names are the model's: /resynthesize moves along a direction the model has;
- an inference request of the Open Inference Protocol must name the model's own tensors: a valid request.
The models are the shipped ones (tests serve models/): 1x28x28 images, 32 latents, named directions. Images are
always made at the model's size: valid with and without resizing, whichever phase sets `resize` (schemathesis
may apply this hook to a case before its query is complete); resizing is tested in tests/service/test_routes.py.
"""

import base64
import io
import json
import random
from typing import Any

import numpy as np
import schemathesis
from PIL import Image
from schemathesis.core.parameters import ParameterLocation

IMAGE = (28, 28)
LATENT = 32
DIRECTION = "sneakers-to-boots"


def png(rng: random.Random) -> bytes:
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, IMAGE, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def model_sized(array: list[Any], rng: random.Random) -> list[Any]:
    """An array of the model's size with the array's number of channels (H x W, or C x H x W)."""
    channels = len(array) if isinstance(array[0][0], list) else 0
    values = np.random.default_rng(rng.randrange(2**32)).uniform(0, 1, (max(channels, 1), *IMAGE)).round(3)
    return values.tolist() if channels else values[0].tolist()


def fix_images(case: Any, rng: random.Random) -> None:
    body = case.body
    if case.media_type == "multipart/form-data" and isinstance(body, dict) and "images" in body:
        files = body["images"] if isinstance(body["images"], list) else [body["images"]]
        body["images"] = [png(rng) for _ in files]
    elif isinstance(body, dict):
        if body.get("images") is not None:
            body["images"] = [base64.b64encode(png(rng)).decode() for _ in body["images"]]
        if body.get("arrays") is not None:
            body["arrays"] = [model_sized(a, rng) for a in body["arrays"]]
        if body.get("z") is not None:
            body["z"] = [(row + [0.0] * LATENT)[:LATENT] for row in body["z"]]


def valid_inference(case: Any, rng: random.Random) -> None:
    """A decoder request (the path's model is fashion-mnist.decoder): z FP32 [n, 32], as JSON, or for a binary
    body with the binary tensor data extension (the JSON header, then the raw tensor)."""
    n = rng.randint(1, 4)
    z = np.asarray([round(rng.uniform(-3, 3), 3) for _ in range(n * LATENT)], "<f4")
    tensor: dict[str, Any] = {"name": "z", "shape": [n, LATENT], "datatype": "FP32"}
    if case.media_type == "application/octet-stream":
        header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": z.nbytes}}]}).encode()
        case.body = header + z.tobytes()
        case.headers = {**(case.headers or {}), "Inference-Header-Content-Length": str(len(header))}
    else:
        body = case.body if isinstance(case.body, dict) else {}
        request: dict[str, Any] = {"inputs": [{**tensor, "data": z.tolist()}]}
        if isinstance(body.get("id"), str):
            request["id"] = body["id"]
        case.body = request


def positive(meta: Any, location: ParameterLocation) -> bool:
    """The case is schema-valid, and so is the given part of it (a coverage case may break one part only)."""
    component = meta.components.get(location)
    return meta.generation.mode.is_positive and (component is None or component.mode.is_positive)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    rng = random.Random(case.id)
    if positive(meta, ParameterLocation.BODY):
        if case.path.startswith("/v2/") and case.path.endswith("/infer"):
            valid_inference(case, rng)
        elif case.method.upper() == "POST":
            fix_images(case, rng)
    if case.path == "/resynthesize":
        case.query = {**(case.query or {}), "direction": DIRECTION}
    return case
