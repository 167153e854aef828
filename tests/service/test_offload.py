"""Which inputs are decoded inline on the event loop (offload.py): only work with a known small bound."""

import io

import numpy as np
from PIL import Image

from service.offload import INLINE_MAX_BYTES, INLINE_MAX_IMAGES, small_inputs

MODEL_PIXELS = 28 * 28


def encoded(shape: tuple[int, ...], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def test_many_model_size_pngs_are_inline():
    assert small_inputs([encoded((28, 28))] * 64, MODEL_PIXELS)


def test_a_larger_declared_size_sends_the_request_to_the_pool():
    big = encoded((29, 28))  # one row more than the model's image: decoding is not bounded by its size
    assert len(big) < INLINE_MAX_BYTES
    assert not small_inputs([encoded((28, 28))] * (INLINE_MAX_IMAGES + 1) + [big], MODEL_PIXELS)
    assert small_inputs([big], MODEL_PIXELS)  # a lone small file is inline whatever it declares


def test_jpegs_arrays_and_large_totals_go_to_the_pool():
    jpeg = encoded((28, 28), "JPEG")
    assert not small_inputs([jpeg] * (INLINE_MAX_IMAGES + 1), MODEL_PIXELS)
    assert not small_inputs([[[0.0]]], MODEL_PIXELS)
    assert not small_inputs([b"\x00" * (INLINE_MAX_BYTES + 1)], MODEL_PIXELS)
