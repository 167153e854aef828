"""A procedurally generated shapes dataset with known factors of variation, like dSprites.

Made here, deterministic by seed; nothing is downloaded. Each image is binary (pixel levels {0, 1}), one
channel, size x size pixels, and shows one white shape on black, fixed by five discrete factors:

    shape     3 values: square, ellipse, triangle
    scale     6 values: 0.5 .. 1.0 of the base circumradius (a quarter of the image size), linearly
    rotation  16 values: 2 pi k / 16, k = 0..15 (clockwise on screen, as image y points down)
    pos_x     16 values, linearly from R to size - R, R the circumradius at scale 1
    pos_y     16 values, the same

Every shape fits inside its circumscribed circle (radius 1 in its own frame), and the positions keep that
circle, at the largest scale, inside the image, so no shape is ever clipped. A pixel is "on" iff its centre
(i + 0.5, j + 0.5) lies inside the rotated, scaled, translated shape: the renderer maps each pixel centre
back into the shape's frame and evaluates the shape's inside test there, vectorised over a batch.

As in dSprites, rotations are only identifiable up to each shape's symmetry (a quarter turn for the square,
a half turn for the ellipse, a third for the triangle): such factor values give the same image.

`load_shapes` draws train and test factor combinations without replacement from one seeded permutation of
all 3 * 6 * 16 * 16 * 16 = 73,728 combinations: train takes its start, test its end, so the splits never
share a combination, and each split depends only on the seed and its own size.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.image_data import ImageData

FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 16, 16, 16)  # number of values of each factor, in FACTOR_NAMES order
SHAPE_NAMES = ("square", "ellipse", "triangle")
SCALE_VALUES = np.linspace(0.5, 1.0, FACTOR_SIZES[1])  # fraction of the base circumradius
ROTATION_VALUES = 2 * np.pi * np.arange(FACTOR_SIZES[2]) / FACTOR_SIZES[2]  # radians, [0, 2 pi)
BASE_RADIUS = 0.25  # circumradius at scale 1, as a fraction of the image size
MIN_SIZE = 8  # below this the smallest shapes are a few pixels and the positions overlap
NUM_COMBINATIONS = math.prod(FACTOR_SIZES)
_CHUNK = 1024  # images rendered at once: bounds the (chunk, size, size) float64 temporaries


def position_values(size: int) -> np.ndarray:
    """The 16 centre coordinates (pixels, image edge at 0 and size) for pos_x and pos_y."""
    radius = BASE_RADIUS * size * SCALE_VALUES[-1]
    return np.linspace(radius, size - radius, FACTOR_SIZES[3])


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """n factor combinations drawn independently and uniformly, with replacement: (n, 5) int64."""
    return np.stack([rng.integers(0, k, size=n) for k in FACTOR_SIZES], axis=1).astype(np.int64)


def render(factors: np.ndarray, size: int = 32) -> np.ndarray:
    """Factor indices (n, 5) int -> binary images (n, size, size) uint8 in {0, 1}."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must have shape (n, {len(FACTOR_SIZES)}), got {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integers, got {factors.dtype}")
    if factors.size and ((factors < 0).any() or (factors >= np.array(FACTOR_SIZES)).any()):
        raise ValueError(f"factor values out of range; sizes are {dict(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True))}")
    if size < MIN_SIZE:
        raise ValueError(f"image size must be at least {MIN_SIZE}, got {size}")
    out = np.empty((len(factors), size, size), dtype=np.uint8)
    for start in range(0, len(factors), _CHUNK):
        out[start : start + _CHUNK] = _render_chunk(factors[start : start + _CHUNK], size)
    return out


def _render_chunk(factors: np.ndarray, size: int) -> np.ndarray:
    shape, scale, rotation, pos_x, pos_y = factors.T  # each (n,)
    positions = position_values(size)
    radius = (BASE_RADIUS * size * SCALE_VALUES[scale])[:, None, None]  # (n, 1, 1) circumradius, pixels
    cos = np.cos(ROTATION_VALUES[rotation])[:, None, None]
    sin = np.sin(ROTATION_VALUES[rotation])[:, None, None]
    centres = np.arange(size) + 0.5  # pixel centres, (size,)
    dx = centres[None, None, :] - positions[pos_x][:, None, None]  # (n, 1, size): column offsets
    dy = centres[None, :, None] - positions[pos_y][:, None, None]  # (n, size, 1): row offsets
    # Undo the rotation (apply R(-theta)) and the scale: (u, v) is the pixel centre in the shape's own
    # frame, where the shape lies within the unit circle. Broadcasting gives (n, size, size).
    u = (cos * dx + sin * dy) / radius
    v = (-sin * dx + cos * dy) / radius
    inside = np.zeros(u.shape, dtype=bool)
    for index, test in enumerate(_INSIDE):
        pick = shape == index
        if pick.any():
            inside[pick] = test(u[pick], v[pick])
    return inside.astype(np.uint8)


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Half-side 1/sqrt(2): the corners touch the unit circle. Area 2.
    return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Semi-axes 1 (along u) and 1/2 (along v): elongated, so rotation shows. Area pi / 2.
    return u**2 + (2 * v) ** 2 <= 1


_TRIANGLE_NORMALS = np.array([[math.sin(a), math.cos(a)] for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)])


def _inside_triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, inscribed in the unit circle with its apex at v = -1 (up on screen at rotation 0), its
    # centroid at the origin; inside = behind all three edges, each at distance 1/2 (the inradius) along
    # its outward normal. Area 3 sqrt(3) / 4.
    dist = u[..., None] * _TRIANGLE_NORMALS[:, 0] + v[..., None] * _TRIANGLE_NORMALS[:, 1]  # (..., 3)
    return (dist <= 0.5).all(axis=-1)


_INSIDE = (_inside_square, _inside_ellipse, _inside_triangle)  # in SHAPE_NAMES order


def load_shapes(n_train: int, n_test: int, seed: int = 0, size: int = 32) -> tuple[ImageData, ImageData]:
    """Train and test splits: images (N, 1, size, size) uint8 in {0, 1}, levels 2, with their factors.

    Labels are the shape index, so class-wise plots show the three shapes. The two splits are disjoint
    sets of factor combinations (see the module docstring).
    """
    return shapes_split("train", n_train, n_test, seed, size), shapes_split("test", n_train, n_test, seed, size)


def shapes_split(split: str, n_train: int, n_test: int, seed: int = 0, size: int = 32) -> ImageData:
    """One split of `load_shapes`, rendering only that split's images."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n_train < 0 or n_test < 0 or n_train + n_test > NUM_COMBINATIONS:
        raise ValueError(
            f"need 0 <= n_train + n_test <= {NUM_COMBINATIONS} (the distinct factor combinations), "
            f"got {n_train} + {n_test}"
        )
    # One permutation of all combinations: train takes its start, test its end, so they never overlap.
    order = np.random.default_rng(seed).permutation(NUM_COMBINATIONS)
    index = order[:n_train] if split == "train" else order[NUM_COMBINATIONS - n_test :]
    factors = np.stack(np.unravel_index(index, FACTOR_SIZES), axis=1).astype(np.int64)  # (N, 5)
    images = render(factors, size)  # (N, size, size)
    return ImageData(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(factors[:, 0].copy()),
        levels=2,
        class_names=SHAPE_NAMES,
        name="shapes",
        factors=torch.from_numpy(factors),
        factor_names=FACTOR_NAMES,
    )
