"""The images a call takes, as the parts of a request: files are uploaded, float arrays sent as JSON.

Each input gives one or more images:
  - a path (str or os.PathLike) or the bytes of a PNG or JPEG file: the file, uploaded as it is;
  - a PIL image: saved as PNG (lossless) and uploaded;
  - a numpy array [H, W] (one image), [N, H, W] (N grey images) or [N, C, H, W] (C = 1 or 3), channels first:
      uint8 (or another integer type with values 0..255): 8-bit levels, saved as PNG and uploaded, so the service
      maps them exactly as it maps the same image uploaded as a file (e.g. x = (k + 0.5) / 256);
      float (or bool): values in the model's range, sent as JSON `arrays` and used as they are.
A list or tuple of inputs gives their images in order. The service takes one form per request: a call whose
images mix files and float arrays is sent as several requests (client.py).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union

import numpy as np

from vae_client.png import encode_png

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageInput: TypeAlias = Union[str, os.PathLike[str], bytes, bytearray, memoryview, np.ndarray, "PILImage"]  # noqa: UP007
ImageInputs: TypeAlias = ImageInput | Sequence[ImageInput]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})  # what Pillow saves as PNG as they are
MULTIPART_OVERHEAD = 200  # bytes of a part's boundary and headers, for the request size budget


@dataclass(frozen=True)
class FilePart:
    """An image file to upload (multipart field `images`)."""

    data: bytes
    filename: str
    content_type: str
    kind: Literal["file"] = "file"

    @property
    def size(self) -> int:
        return len(self.data) + MULTIPART_OVERHEAD


@dataclass(frozen=True)
class ArrayPart:
    """One image's values as JSON text, C x H x W (an item of the JSON body's `arrays`)."""

    json: bytes
    kind: Literal["array"] = "array"

    @property
    def size(self) -> int:
        return len(self.json) + 1


Part: TypeAlias = FilePart | ArrayPart


def image_parts(images: ImageInputs) -> list[Part]:
    """Every image of `images` (one input or a sequence of them), in order, as request parts."""
    items: Any = [images] if is_single(images) else images
    if not isinstance(items, Sequence):
        raise TypeError(f"images: give a path, bytes, a PIL image, a numpy array or a list of them, not "
                        f"{type(images).__name__}")
    parts: list[Part] = []
    for item in items:
        if not is_single(item):
            raise TypeError(f"an image is a path, bytes, a PIL image or a numpy array, not {type(item).__name__}")
        parts.extend(item_parts(item, len(parts)))
    if not parts:
        raise ValueError("no images given")
    return parts


def is_single(value: Any) -> bool:
    return isinstance(value, str | os.PathLike | bytes | bytearray | memoryview | np.ndarray) or is_pil_image(value)


def is_pil_image(value: Any) -> bool:
    """Whether `value` is a PIL image (PIL is imported by whoever made one; this module never imports it)."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


def item_parts(item: Any, start: int) -> list[Part]:
    if isinstance(item, np.ndarray):
        return array_parts(item, start)
    if is_pil_image(item):
        return [pil_part(item, start)]
    if isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        return [FilePart(data, f"image-{start}{suffix(data)}", content_type(data))]
    path = Path(item)
    data = path.read_bytes()
    return [FilePart(data, path.name, content_type(data))]


def content_type(data: bytes) -> str:
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(JPEG_SIGNATURE):
        return "image/jpeg"
    return "application/octet-stream"  # the service names the format it refuses


def suffix(data: bytes) -> str:
    return {"image/png": ".png", "image/jpeg": ".jpg"}.get(content_type(data), "")


def pil_part(image: PILImage, start: int) -> FilePart:
    if image.mode not in PNG_MODES:
        bands = image.getbands()
        image = image.convert("L" if len(bands) == 1 else ("RGBA" if "A" in bands else "RGB"))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return FilePart(buffer.getvalue(), f"image-{start}.png", "image/png")


def array_parts(array: np.ndarray, start: int) -> list[Part]:
    """[H, W], [N, H, W] or [N, C, H, W] -> one part per image: uint8 levels as PNG files, floats as JSON."""
    shapes = {2: lambda a: a[None, None], 3: lambda a: a[:, None], 4: lambda a: a}
    if array.ndim not in shapes:
        raise ValueError(f"an image array is [H, W], [N, H, W] or [N, C, H, W], not {array.ndim}-D "
                         f"{list(array.shape)}")
    batch = shapes[array.ndim](array)
    if batch.shape[1] not in (1, 3) or 0 in batch.shape:
        raise ValueError(f"image arrays are [N, C, H, W] with C = 1 or 3 and no empty axis (channels first), got "
                         f"{list(array.shape)}")
    if batch.dtype == np.bool_:
        batch = batch.astype(np.float64)
    if np.issubdtype(batch.dtype, np.integer):
        if batch.dtype != np.uint8 and (batch.min() < 0 or batch.max() > 255):
            raise ValueError("integer image arrays hold 8-bit levels 0..255; send floats for values in the "
                             "model's range")
        levels = batch.astype(np.uint8)
        return [FilePart(encode_png(image), f"image-{start + i}.png", "image/png") for i, image in enumerate(levels)]
    if not np.issubdtype(batch.dtype, np.floating):
        raise TypeError(f"image arrays are uint8 levels or floats, not {batch.dtype}")
    values = batch.astype(np.float64)  # float32 -> float64 is exact, and so is float64's repr: the same numbers
    if not np.all(np.isfinite(values)):
        raise ValueError("image arrays hold NaN or infinite values")
    return [ArrayPart(json.dumps(image.tolist(), separators=(",", ":")).encode()) for image in values]
