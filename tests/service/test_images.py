"""Image decoding: libspng's fast path gives exactly the pixels and conversion report that Pillow gives."""

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import service.images as images
from service.errors import InvalidInput
from service.manifest import ImageSpec

GREY_SPEC = ImageSpec(channels=1, height=28, width=28, levels=256, pixel_mode="dequantize")
RGB_SPEC = ImageSpec(channels=3, height=16, width=12, levels=256, pixel_mode="plain")


def png(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save)
    return buf.getvalue()


def text_chunk() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "ancillary chunks are skipped")
    return info


RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (28, 28), dtype=np.uint8)
SMOOTH = np.add.outer(np.arange(28), np.arange(28)).astype(np.uint8) * 4  # filters other than None win here
RGB = RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)
CASES = [
    ("grey", GREY_SPEC, png(GREY)),
    ("grey smooth, compressed hard", GREY_SPEC, png(SMOOTH, compress_level=9, optimize=True)),
    ("grey, no compression", GREY_SPEC, png(SMOOTH, compress_level=0)),
    ("grey with a text chunk", GREY_SPEC, png(GREY, pnginfo=text_chunk())),
    ("grey with transparency", GREY_SPEC, png(GREY, transparency=0)),
    ("rgb", RGB_SPEC, png(RGB)),
    ("rgb smooth", RGB_SPEC, png(np.repeat(SMOOTH[:16, :12, None], 3, axis=2))),
]


@pytest.mark.parametrize("spec, data", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_matches_pillow(spec, data, monkeypatch):
    assert images.fast_png_levels(data, "f", spec, 10**6) is not None  # the case takes the fast path
    fast_x, fast_report = images.image_from_bytes(data, "f", spec, True, 10**6)
    monkeypatch.setattr(images, "pyspng", None)
    slow_x, slow_report = images.image_from_bytes(data, "f", spec, True, 10**6)
    assert fast_x.dtype == slow_x.dtype == np.float32 and fast_x.shape == (spec.channels, spec.height, spec.width)
    np.testing.assert_array_equal(fast_x, slow_x)
    assert fast_report == slow_report


@pytest.mark.parametrize("name, data", [
    ("another size", png(GREY[:20])),
    ("rgb file for a grey model", png(RGB)),
    ("16-bit grey", png(GREY.astype(np.uint16) * 257)),
    ("palette", (lambda: (buf := io.BytesIO(), Image.fromarray(GREY).convert("P").save(buf, "PNG"),
                          buf.getvalue())[2])()),
    ("jpeg", (lambda: (buf := io.BytesIO(), Image.fromarray(GREY).save(buf, "JPEG"), buf.getvalue())[2])()),
])
def test_other_files_go_through_pillow(name, data):
    assert images.fast_png_levels(data, "f", GREY_SPEC, 10**6) is None
    x, report = images.image_from_bytes(data, "f", GREY_SPEC, True, 10**6)
    assert x.shape == (1, 28, 28)


@pytest.mark.parametrize("start", [60, 200, -30])
def test_damaged_files_leave_the_fast_path_and_are_a_422(start):
    data = bytearray(png(GREY))
    data[start:start + 10] = bytes(10)  # inside the IDAT stream: only the CRC tells (pyspng skips it)
    assert images.fast_png_levels(bytes(data), "f", GREY_SPEC, 10**6) is None
    with pytest.raises(InvalidInput) as err:
        images.image_from_bytes(bytes(data), "images[0]", GREY_SPEC, True, 10**6)
    assert err.value.field == "images[0]"


@pytest.mark.parametrize(("pixel_mode", "levels", "expected"), [
    # k_L = round(k (L - 1) / 255), x = (k_L + 0.5) / L: every 8-bit level, written out independently
    ("dequantize", 17, lambda k: (np.round(k * 16 / 255) + 0.5) / 17),
    ("dequantize", 256, lambda k: (k + 0.5) / 256),
    ("plain", 256, lambda k: k / 255),
    ("binarize", 2, lambda k: (k >= 128).astype(float)),
])
def test_every_8_bit_level_maps_as_in_training(pixel_mode, levels, expected):
    spec = ImageSpec(channels=1, height=16, width=16, levels=levels, pixel_mode=pixel_mode)
    k = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)  # uint8, as decoders give them
    x, _ = images.map_pixels(k, spec)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, expected(np.arange(256, dtype=np.float64)).reshape(1, 16, 16), rtol=0, atol=1e-7)
    if levels == 17:  # the top level is the top bin, not a wrapped-around uint8 product
        assert x[0, 15, 15] == np.float32(16.5 / 17)
