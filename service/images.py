"""Image conversion, defined once: client images and arrays -> model inputs, model outputs -> PNG.

Inputs become float32 (C, H, W) values in [0, 1] as the manifest's image spec says:
  - 8-bit PNG/JPEG pixels k are converted to the model's channels (L = grey, RGB) and, unless
    resize=false, to its height x width (bilinear); then mapped as in training:
      dequantize models: x = (k_L + 0.5) / L, the middle of the dequantization bin (k_L = k on L = 256 levels)
      plain models:      x = k / 255
      binarize models:   x = 1 if k / 255 >= 0.5 else 0
  - arrays of values in [0, 1] (H x W or C x H x W) are used as they are (binarize models: thresholded at
    0.5), after the same channel and size conversion.
Each input reports the conversion applied. Every failure is an ApiError naming the input.

Decoding: a PNG that is already 8-bit in the model's mode (grey or RGB) and at its size is decoded by
libspng (pyspng) in about 7 us, against about 55 us through Pillow, whose per-file Python overhead is most
of the cost of a small image; every other file goes through Pillow. Both give the same pixels (tested).
"""

from __future__ import annotations

import base64
import binascii
import functools
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

from service.errors import ApiError
from service.manifest import ImageSpec
from service.png import encode_pngs

ALLOWED_FORMATS = {"PNG", "JPEG"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's RGB -> L


def decode_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, field, f"not valid base64: {exc}") from exc


def image_from_bytes(data: bytes, field: str, spec: ImageSpec, resize: bool, max_pixels: int
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """PNG/JPEG bytes -> (C, H, W) float32 model input and a description of the conversion."""
    levels = fast_png_levels(data, field, spec, max_pixels) if pyspng is not None else None
    if levels is not None:
        mode = "L" if spec.channels == 1 else "RGB"
        x, mapping = map_pixels(levels, spec)
        return x, {"format": "PNG", "source_mode": mode, "source_size": [spec.height, spec.width], "mode": mode,
                   "resized": False, "pixel_mapping": mapping}
    try:
        img = open_image(data, field)
        fmt = img.format
        width, height = img.size
        if width * height > max_pixels:  # from the header, before any pixel is decoded
            raise ApiError(413, field, f"image is {width}x{height} = {width * height} pixels, over the limit",
                           max_pixels)
        img.load()
    except ApiError:
        raise
    except Image.DecompressionBombError as exc:
        raise ApiError(413, field, f"image rejected as a decompression bomb: {exc}", max_pixels) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for undecodable data
        raise ApiError(422, field, f"cannot decode image: {exc}") from exc
    mode = "L" if spec.channels == 1 else "RGB"
    conversion: dict[str, Any] = {"format": fmt, "source_mode": img.mode, "source_size": [height, width],
                                  "mode": mode, "resized": False}
    if img.mode != mode:
        img = img.convert(mode)
    if (height, width) != (spec.height, spec.width):
        if not resize:
            raise ApiError(422, field, f"image is {height}x{width}, the model takes {spec.height}x{spec.width}; "
                           "send that size or drop resize=false", [spec.height, spec.width])
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
        conversion["resized"] = True
    k = np.asarray(img).reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)  # uint8 levels
    x, mapping = map_pixels(k, spec)
    conversion["pixel_mapping"] = mapping
    return x, conversion


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
        raise ApiError(413, field, f"image is {width}x{height} = {width * height} pixels, over the limit", max_pixels)
    try:
        pixels = pyspng.load(data, mode)  # (H, W) or (H, W, 3)
    except Exception as exc:  # noqa: BLE001 - libspng's errors: corrupt or truncated data
        raise ApiError(422, field, f"cannot decode image: {exc}") from exc
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


def open_image(data: bytes, field: str) -> Image.Image:
    """Pillow's lazy open (header only). Trying PNG and JPEG first skips probing every other format; only a
    file that is neither is opened again, to name its format in the 415."""
    try:
        return Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except UnidentifiedImageError:
        fmt = Image.open(io.BytesIO(data)).format  # raises again if Pillow knows no format for it
        raise ApiError(415, field, f"image format {fmt} is not supported; send PNG or JPEG",
                       sorted(ALLOWED_FORMATS)) from None


def map_pixels(k: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, str]:
    """8-bit levels (uint8 or float array) -> model values, as the module docstring says. uint8 levels go
    through the mapping's 256-entry table (one lookup, about 2 us against 20 us of arithmetic)."""
    if k.dtype == np.uint8:
        table, mapping = pixel_table(spec.pixel_mode, spec.levels)
        return table[k], mapping
    return _map_levels(k, spec.pixel_mode, spec.levels)


@functools.cache
def pixel_table(pixel_mode: str, levels: int) -> tuple[np.ndarray, str]:
    """(256,) float32: the model value of each 8-bit level, by the same arithmetic as other inputs."""
    return _map_levels(np.arange(256, dtype=np.uint8), pixel_mode, levels)


def _map_levels(k: np.ndarray, pixel_mode: str, levels: int) -> tuple[np.ndarray, str]:
    if pixel_mode == "dequantize":
        # float64 first: uint8 levels times (levels - 1) would wrap around in uint8 (numpy 2 keeps the dtype)
        k_l = np.round(np.asarray(k, np.float64) * (levels - 1) / 255.0) if levels != 256 else k
        return ((k_l + 0.5) / levels).astype(np.float32), f"x = (k + 0.5) / {levels}"
    if pixel_mode == "binarize":
        return (k / 255.0 >= 0.5).astype(np.float32), "x = 1 if k / 255 >= 0.5 else 0"
    return (k / 255.0).astype(np.float32), "x = k / 255"


def image_from_array(values: Any, field: str, spec: ImageSpec, resize: bool, max_pixels: int
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Nested lists of values in [0, 1], H x W or C x H x W -> (C, H, W) float32."""
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, field, f"not a rectangular array of numbers: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or 0 in arr.shape:
        raise ApiError(422, field, f"array has shape {list(arr.shape)}; send H x W or C x H x W with C = 1 or 3",
                       [spec.channels, spec.height, spec.width])
    if arr.shape[1] * arr.shape[2] > max_pixels:
        raise ApiError(413, field, f"array is {arr.shape[1]}x{arr.shape[2]} pixels, over the limit", max_pixels)
    if not np.all(np.isfinite(arr)):
        raise ApiError(422, field, "array holds NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ApiError(422, field, f"values must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]", [0, 1])
    conversion: dict[str, Any] = {"format": "array", "source_shape": list(arr.shape), "resized": False}
    c, h, w = arr.shape
    if c != spec.channels:
        arr = (np.tensordot(LUMA, arr, axes=1)[None] if spec.channels == 1 else np.repeat(arr, 3, axis=0))
        conversion["channels_converted"] = f"{c} -> {spec.channels}"
    if (h, w) != (spec.height, spec.width):
        if not resize:
            raise ApiError(422, field, f"array is {h}x{w}, the model takes {spec.height}x{spec.width}; "
                           "send that size or drop resize=false", [spec.height, spec.width])
        size = (spec.width, spec.height)
        arr = np.stack([np.asarray(Image.fromarray(ch, mode="F").resize(size, Image.Resampling.BILINEAR))
                        for ch in arr]).clip(0, 1)
        conversion["resized"] = True
    if spec.pixel_mode == "binarize":
        arr = (arr >= 0.5).astype(np.float32)
        conversion["pixel_mapping"] = "x = 1 if value >= 0.5 else 0"
    else:
        conversion["pixel_mapping"] = "x = value"
    return np.ascontiguousarray(arr, dtype=np.float32), conversion


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Model values (..., C, H, W), clipped to [0, 1] -> 8-bit levels."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) values -> one (C, H', W') image, tiles on a white background."""
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = -(-n // ncols)
    out = np.ones((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), np.float32)
    for i in range(n):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        out[:, top : top + h, left : left + w] = images[i]
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """(C, H, W) values in [0, 1] -> PNG bytes (grey for C = 1, RGB for C = 3)."""
    return encode_pngs(to_uint8(image)[None])[0]


def pngs_base64(images: np.ndarray) -> list[str]:
    """(N, C, H, W) values in [0, 1] -> N base64 PNG files, encoded together (service/png.py)."""
    return [base64.b64encode(data).decode("ascii") for data in encode_pngs(to_uint8(images))]
