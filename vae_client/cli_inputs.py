"""What the command line (cli.py) reads: image files and folders, and latent vectors from a JSON file.

Problems with these inputs raise `InputError`, which the command line reports as a usage error (exit code 2).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vae_client.images import ImageInput, content_type

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
SENT_AS_IS = frozenset({"image/png", "image/jpeg"})  # the formats the service reads; others go as PNG


class InputError(Exception):
    """A file the command line cannot read, or one that does not hold what it should."""


def image_files(arguments: Sequence[str], recursive: bool = False) -> list[Path]:
    """Every image a command is given: a file as it is, a folder as its image files (by suffix, sorted; its
    subfolders too when `recursive`), in the order of the arguments."""
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found.extend(folder_images(path, recursive))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{argument}: no such file or folder")
    return found


def folder_images(folder: Path, recursive: bool) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images = sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        where = " or its subfolders" if recursive else " (--recursive looks in subfolders)"
        raise InputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it{where}")
    return images


def load_images(paths: Sequence[Path]) -> list[ImageInput]:
    """The client's inputs for these files: PNG and JPEG files as their bytes (uploaded as they are), other
    formats (BMP, GIF, WebP: the service reads PNG and JPEG only) opened with Pillow, so the client sends them as
    PNG (a GIF's first frame)."""
    return [load_image(path) for path in paths]


def load_image(path: Path) -> ImageInput:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    if content_type(data) in SENT_AS_IS:
        return data
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()  # the file is closed on leaving the block
    except OSError as exc:  # UnidentifiedImageError is one
        raise InputError(f"{path}: not an image file Pillow can read ({exc})") from exc


def read_latents(source: str) -> np.ndarray:
    """Latent vectors [N, D] from a JSON file (`-`: standard input) holding a list of vectors, one vector, an
    object `{"z": ...}` of either, or the output of `vae-client encode --json` (each image's mean)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InputError(f"{source}: {exc.strerror or exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source}: not JSON ({exc})") from exc
    return latent_array(latent_values(document), source)


def latent_values(document: Any) -> Any:
    if isinstance(document, dict) and "z" in document:
        return document["z"]
    if isinstance(document, dict) and isinstance(document.get("results"), list):
        return [item.get("mean") if isinstance(item, dict) else None for item in document["results"]]
    return document


def latent_array(values: Any, source: str) -> np.ndarray:
    expected = ('a JSON list of latent vectors (numbers), one vector, {"z": [...]}, or the output of '
                "encode --json")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: expected {expected}") from exc
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or 0 in array.shape:
        raise InputError(f"{source}: expected {expected}; got an array of shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{source}: the latent vectors hold NaN or infinite values")
    return array
