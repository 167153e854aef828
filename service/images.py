"""Image conversion, defined once: client images and arrays -> model inputs, model outputs -> PNG.

Inputs become float32 (C, H, W) values in [0, 1] as the manifest's image spec says:
  - 8-bit PNG/JPEG pixels k are converted to the model's channels (L = grey, RGB) and, unless
    resize=false, to its height x width (bilinear); then mapped by `manifest.served_pixel_values`
    (dequantized models: the middle of the bin, x = (k_L + 0.5) / L; plain: k / 255; binarized: k / 255 >= 0.5);
  - arrays of values in [0, 1] (H x W or C x H x W) are used as they are (binarize models: thresholded at
    0.5), after the same channel and size conversion.
Each input reports the conversion applied; every failure is a ServiceError naming the input.

Decoding: a PNG that is already 8-bit in the model's mode (grey or RGB) and at its size is decoded by
libspng (pyspng), whose per-file cost is a fraction of Pillow's for small images (docs/performance.md);
every other file goes through Pillow. Both give the same pixels (tested).
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

try:
    import pyspng  # libspng bindings, a service dependency
except ImportError:  # pragma: no cover - without it every file goes through Pillow
    pyspng = None

from service.errors import InvalidInput, TooLarge, UnsupportedMedia
from service.manifest import ImageSpec, served_pixel_values
from service.png import encode_pngs

ALLOWED_FORMATS = ["JPEG", "PNG"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's RGB -> L
Conversion = dict[str, Any]  # what was done to one input, reported back in responses


def decode_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(field, f"not valid base64: {exc}") from exc


def image_from_bytes(data: bytes, field: str, spec: ImageSpec, resize: bool, max_pixels: int
                     ) -> tuple[np.ndarray, Conversion]:
    """PNG/JPEG bytes -> (C, H, W) float32 model input and a description of the conversion."""
    mode = "L" if spec.channels == 1 else "RGB"
    levels = fast_png_levels(data, field, spec, max_pixels) if pyspng is not None else None
    if levels is not None:
        x, mapping = map_pixels(levels, spec)
        return x, {"format": "PNG", "source_mode": mode, "source_size": [spec.height, spec.width], "mode": mode,
                   "resized": False, "pixel_mapping": mapping}
    img = open_image(data, field, max_pixels)
    width, height = img.size
    conversion: Conversion = {"format": img.format, "source_mode": img.mode, "source_size": [height, width],
                              "mode": mode, "resized": False}
    if img.mode != mode:
        img = img.convert(mode)
    if (height, width) != (spec.height, spec.width):
        if not resize:
            raise InvalidInput(field, f"image is {height}x{width}, the model takes {spec.height}x{spec.width}; "
                               "send that size or drop resize=false", [spec.height, spec.width])
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
        conversion["resized"] = True
    k = np.asarray(img).reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)  # uint8 levels
    x, conversion["pixel_mapping"] = map_pixels(k, spec)
    return x, conversion


def open_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """The decoded image, its size checked against the limit from the header before any pixel is decoded.
    PNG and JPEG are tried first (no probing of every other format); a file that is neither is opened again
    only to name its format in the refusal."""
    try:
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            fmt = Image.open(io.BytesIO(data)).format  # raises again if Pillow knows no format for it
            raise UnsupportedMedia(field, f"image format {fmt} is not supported; send PNG or JPEG",
                                   ALLOWED_FORMATS) from None
        width, height = img.size
        if width * height > max_pixels:
            raise TooLarge(field, f"image is {width}x{height} = {width * height} pixels, over the limit", max_pixels)
        img.load()
        return img
    except (UnsupportedMedia, TooLarge):
        raise
    except Image.DecompressionBombError as exc:
        raise TooLarge(field, f"image rejected as a decompression bomb: {exc}", max_pixels) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for undecodable data
        raise InvalidInput(field, f"cannot decode image: {exc}") from exc


def fast_png_levels(data: bytes, field: str, spec: ImageSpec, max_pixels: int) -> np.ndarray | None:
    """(C, H, W) uint8 levels of an 8-bit grey (1-channel models) or RGB (3-channel) non-palette PNG already
    at the model's size, decoded by libspng; None for any other file (Pillow decodes it)."""
    size = png_size(data)
    if size is None:
        return None
    width, height = size
    depth, color_type = data[24], data[25]
    wanted_type, mode = (0, "L") if spec.channels == 1 else (2, "RGB")  # PNG colour types: 0 grey, 2 RGB
    if depth != 8 or color_type != wanted_type or (height, width) != (spec.height, spec.width):
        return None
    if not chunks_intact(data):  # libspng as pyspng sets it up skips the CRCs; Pillow reports the damage
        return None
    if width * height > max_pixels:
        raise TooLarge(field, f"image is {width}x{height} = {width * height} pixels, over the limit", max_pixels)
    try:
        pixels = pyspng.load(data, mode)  # (H, W) or (H, W, 3)
    except Exception as exc:  # noqa: BLE001 - libspng's errors: corrupt or truncated data
        raise InvalidInput(field, f"cannot decode image: {exc}") from exc
    return pixels.reshape(height, width, spec.channels).transpose(2, 0, 1)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None for data that does not start as a PNG."""
    if len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def chunks_intact(data: bytes) -> bool:
    """Every chunk of a PNG is complete and matches its CRC-32, up to IEND."""
    view, pos = memoryview(data), 8
    while pos + 12 <= len(data):
        end = pos + 8 + int.from_bytes(view[pos:pos + 4], "big")  # length, type, data | CRC of type + data
        if end + 4 > len(data) or zlib.crc32(view[pos + 4:end]) != int.from_bytes(view[end:end + 4], "big"):
            return False
        if view[pos + 4:pos + 8] == b"IEND":
            return True
        pos = end + 4
    return False


def map_pixels(k: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, str]:
    """uint8 levels (C, H, W) -> model values and the formula: one lookup in the manifest's mapping table."""
    table, mapping = served_pixel_values(spec.pixel_mode, spec.levels)
    return table[k], mapping


def image_from_array(values: Any, field: str, spec: ImageSpec, resize: bool, max_pixels: int
                     ) -> tuple[np.ndarray, Conversion]:
    """Values in [0, 1], H x W or C x H x W (nested lists or an array) -> (C, H, W) float32."""
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(field, f"not a rectangular array of numbers: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or 0 in arr.shape:
        raise InvalidInput(field, f"array has shape {list(arr.shape)}; send H x W or C x H x W with C = 1 or 3",
                           list(spec.shape))
    if arr.shape[1] * arr.shape[2] > max_pixels:
        raise TooLarge(field, f"array is {arr.shape[1]}x{arr.shape[2]} pixels, over the limit", max_pixels)
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(field, "array holds NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise InvalidInput(field, f"values must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]", [0, 1])
    conversion: Conversion = {"format": "array", "source_shape": list(arr.shape), "resized": False}
    c, h, w = arr.shape
    if c != spec.channels:
        arr = (np.tensordot(LUMA, arr, axes=1)[None] if spec.channels == 1 else np.repeat(arr, 3, axis=0))
        conversion["channels_converted"] = f"{c} -> {spec.channels}"
    if (h, w) != (spec.height, spec.width):
        if not resize:
            raise InvalidInput(field, f"array is {h}x{w}, the model takes {spec.height}x{spec.width}; "
                               "send that size or drop resize=false", [spec.height, spec.width])
        size = (spec.width, spec.height)
        arr = np.stack([np.asarray(Image.fromarray(ch, mode="F").resize(size, Image.Resampling.BILINEAR))
                        for ch in arr]).clip(0, 1)
        conversion["resized"] = True
    if spec.pixel_mode == "binarize":
        arr = (arr >= 0.5).astype(np.float32)
        conversion["pixel_mapping"] = "x = 1 if value >= 0.5 else 0"
    elif spec.pixel_mode == "discrete":  # the model's probability mass is over its L levels
        arr = (np.round(arr * (spec.levels - 1)) / (spec.levels - 1)).astype(np.float32)
        conversion["pixel_mapping"] = f"x = round(value (L - 1)) / (L - 1), L = {spec.levels}"
    else:
        conversion["pixel_mapping"] = "x = value"
    return np.ascontiguousarray(arr, dtype=np.float32), conversion


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Model values (..., C, H, W), clipped to [0, 1] -> 8-bit levels."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) values -> one (C, H', W') image, tiles in rows of `ncols` (default: a square) on a white
    background, `pad` pixels apart. The one grid of the project: service responses, the model folder's
    pictures (training/plots.py) and the figures."""
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = -(-n // ncols)
    out = np.ones((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), np.float32)
    for i in range(n):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        out[:, top : top + h, left : left + w] = images[i]
    return out


def pngs(images: np.ndarray) -> list[bytes]:
    """(N, C, H, W) values in [0, 1] -> N PNG files (grey for C = 1, RGB for C = 3), encoded together."""
    return encode_pngs(to_uint8(images))
