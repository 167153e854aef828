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
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

import numpy as np
from PIL import Image

from service.errors import ApiError
from service.manifest import ImageSpec

ALLOWED_FORMATS = {"PNG", "JPEG"}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's RGB -> L


def decode_base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, field, f"not valid base64: {exc}") from exc


def image_from_bytes(data: bytes, field: str, spec: ImageSpec, resize: bool, max_pixels: int
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """PNG/JPEG bytes -> (C, H, W) float32 model input and a description of the conversion."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = img.format
            if fmt not in ALLOWED_FORMATS:
                raise ApiError(415, field, f"image format {fmt} is not supported; send PNG or JPEG",
                               sorted(ALLOWED_FORMATS))
            width, height = img.size
            if width * height > max_pixels:
                raise ApiError(413, field, f"image is {width}x{height} = {width * height} pixels, over the limit",
                               max_pixels)
            img.load()
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
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
    k = np.asarray(img, dtype=np.float32).reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)
    x, mapping = map_pixels(k, spec)
    conversion["pixel_mapping"] = mapping
    return x, conversion


def map_pixels(k: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, str]:
    """8-bit levels (float32 array) -> model values, as the module docstring says."""
    if spec.pixel_mode == "dequantize":
        levels = spec.levels
        k_l = np.round(k * (levels - 1) / 255.0) if levels != 256 else k
        return ((k_l + 0.5) / levels).astype(np.float32), f"x = (k + 0.5) / {levels}"
    if spec.pixel_mode == "binarize":
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
    arr = to_uint8(image)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def png_base64(image: np.ndarray) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")
