"""The client's pieces without a server: input conversion, the PNG encoder, request planning and seeds, error
fields, Retry-After and the backoff."""

import io
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest
from PIL import Image

from vae_client.chunks import MAX_SEED, counts, derived_seed, plan, request_seeds
from vae_client.errors import (
    BadRequestError,
    InvalidInputError,
    ServerError,
    ServiceUnavailableError,
    error_from_answer,
    reindexed,
)
from vae_client.images import ArrayPart, FilePart, image_parts
from vae_client.limits import openapi_limits
from vae_client.operations import latent_rows
from vae_client.png import encode_png
from vae_client.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize("channels", [1, 3])
def test_png_encoder_gives_exactly_the_levels(channels):
    levels = np.random.default_rng(0).integers(0, 256, (channels, 13, 7), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(levels))))
    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded.reshape(13, 7, channels).transpose(2, 0, 1), levels)
    with pytest.raises(ValueError):
        encode_png(levels.astype(np.float32))


def test_array_shapes_and_types():
    levels = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    assert len(image_parts(levels[0])) == 1 and len(image_parts(levels)) == 4  # [H, W], [N, H, W]
    parts = image_parts(levels[:, None])  # [N, 1, H, W]
    assert all(isinstance(p, FilePart) and p.content_type == "image/png" for p in parts)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(parts[2].data))), levels[2])
    assert image_parts(levels.astype(np.int64))[1] == parts[1]  # other integer types: the same levels
    values = np.random.default_rng(1).random((2, 3, 4, 5)).astype(np.float32)
    arrays = image_parts(values)
    assert all(isinstance(p, ArrayPart) for p in arrays)
    sent = np.asarray(json.loads(arrays[1].json))  # float64 text of the float32 values: exact
    assert sent.shape == (3, 4, 5) and np.array_equal(sent.astype(np.float32), values[1])
    assert json.loads(image_parts(np.array([[True, False]]))[0].json) == [[[1.0, 0.0]]]
    mixed = image_parts([levels[0], values, b"\x89PNG\r\n\x1a\nrest", bytearray(b"\xff\xd8\xffjpeg")])
    assert [p.kind for p in mixed] == ["file", "array", "array", "file", "file"]
    assert [p.content_type for p in mixed if isinstance(p, FilePart)] == ["image/png", "image/png", "image/jpeg"]
    for bad in (np.zeros((2, 2, 3, 4, 5)), np.zeros((2, 2, 4, 4)), np.zeros((0, 4, 4)), np.full((2, 2), 300),
                np.full((2, 2), np.nan)):
        with pytest.raises(ValueError):
            image_parts(bad)
    for bad_type in ([[0.5, 0.5]], 3, np.zeros((2, 2), complex)):
        with pytest.raises(TypeError):
            image_parts(bad_type)
    with pytest.raises(ValueError):
        image_parts([])


def test_pil_images_are_uploaded_as_png(tmp_path):
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    (part,) = image_parts(grey)
    assert isinstance(part, FilePart) and np.array_equal(np.asarray(Image.open(io.BytesIO(part.data))),
                                                         np.asarray(grey))
    cmyk = Image.new("CMYK", (4, 4))
    assert Image.open(io.BytesIO(image_parts(cmyk)[0].data)).mode == "RGB"
    path = tmp_path / "x.png"
    grey.save(path)
    (from_path,) = image_parts(path)
    assert isinstance(from_path, FilePart) and from_path.filename == "x.png" and from_path.data == path.read_bytes()


def test_requests_are_planned_within_the_limits_in_order():
    assert plan(["f"] * 7, [10] * 7, 3, 1000) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan(["f", "f", "a", "a", "f"], [1] * 5, 64, 1000) == [[0, 1], [2, 3], [4]]  # one form per request
    assert plan(["f"] * 4, [40, 40, 40, 200], 64, 100) == [[0, 1], [2], [3]]  # bytes; a large item alone
    assert counts(12, 5) == [5, 5, 2] and counts(5, 5) == [5] and counts(0, 5) == [0]


def test_seeds_of_split_calls():
    assert request_seeds(None, 1, random=True) == (None, [None])  # the service picks and says
    assert request_seeds(7, 1, random=True) == (7, [7])
    assert request_seeds(7, 3, random=False) == (None, [7, 7, 7])
    base, seeds = request_seeds(7, 3, random=True)
    assert base == 7 and seeds[0] == 7 and len(set(seeds)) == 3 and all(0 <= s <= MAX_SEED for s in seeds)
    assert seeds == request_seeds(7, 3, random=True)[1] and seeds[1] == derived_seed(7, 1) != 8
    base, seeds = request_seeds(None, 3, random=True)
    assert base is not None and seeds[0] == base
    assert request_seeds(5, 3, random=True, shared=True) == (5, [5, 5, 5])


def test_error_fields_name_the_callers_items():
    assert reindexed("images[1]", [3, 4]) == "images[4]"
    assert reindexed("body.arrays[0][2][2]", [5]) == "body.arrays[5][2][2]"
    assert reindexed("body.z[1]", [8, 9]) == "body.z[9]" and reindexed("query.k", [1]) == "query.k"
    body = json.dumps({"error": {"status": 422, "field": "arrays[0]", "message": "bad", "limit": [0, 1],
                                 "errors": [{"field": "arrays[0]", "message": "bad"}]}}).encode()
    error = error_from_answer(422, body, indices=[6], request_id="r1")
    assert isinstance(error, InvalidInputError) and isinstance(error, BadRequestError)
    assert (error.field, error.limit, error.errors[0]["field"], error.request_id) == ("arrays[6]", [0, 1],
                                                                                       "arrays[6]", "r1")
    assert str(error) == "422 arrays[6]: bad (limit [0, 1])"
    assert type(error_from_answer(418, b"{}")) is BadRequestError
    loading = b'{"error": {"status": 503, "field": null, "message": "loading"}}'
    unavailable = error_from_answer(503, loading, retry_after=1)
    assert isinstance(unavailable, ServiceUnavailableError) and isinstance(unavailable, ServerError)
    assert (unavailable.message, unavailable.retry_after) == ("loading", 1)


def test_retry_after_and_backoff():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    policy = RetryPolicy(retries=3, backoff=1.0, backoff_cap=2.5)
    for attempt in range(3):
        waits = [policy.delay(attempt) for _ in range(200)]
        assert all(w is not None and 0 <= w <= min(2.5, 2**attempt) for w in waits)
    assert policy.delay(3) is None  # no retry left
    assert policy.delay(0, retry_after=2.0) >= 2.0
    assert RetryPolicy(max_retry_after=10).delay(0, retry_after=11) is None
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


def test_limits_from_the_openapi_document():
    document = {"paths": {
        "/encode": {"post": {"requestBody": {"content": {"multipart/form-data": {"schema": {
            "properties": {"images": {"maxItems": 8}}}}}}}},
        "/sample": {"get": {"parameters": [{"name": "seed", "schema": {}}, {"name": "n", "schema": {"maximum": 9}}]}}}}
    assert openapi_limits(document) == {"max_images": 8, "max_samples": 9}
    assert openapi_limits({}) == {} and openapi_limits({"paths": {"/sample": {"get": {"parameters": []}}}}) == {}


def test_latent_rows():
    assert latent_rows(np.zeros(3, np.float32)) == [b"[0.0,0.0,0.0]"]
    rows = latent_rows(np.float32([[0.1, -2.5]]))
    assert np.float32(json.loads(rows[0])[0]) == np.float32(0.1)
    for bad in (np.zeros((2, 2, 2)), np.zeros((0, 3)), [[np.inf]]):
        with pytest.raises(ValueError):
            latent_rows(bad)


def test_the_client_imports_neither_torch_nor_onnxruntime_nor_pillow():
    """httpx and numpy only: Pillow is imported where a PIL image is made (to_pil), never by importing the client."""
    import subprocess
    import sys

    code = ("import sys, vae_client; from vae_client import Client, AsyncClient; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'PIL', 'service', 'training', 'fastapi') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
