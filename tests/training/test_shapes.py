"""The generated shapes dataset: determinism, array types, each factor's effect on the image, the splits."""

import math

import numpy as np
import pytest
import torch

from training.config import DataConfig
from training.data import _holdout, load_dataset, to_unit
from training.shapes import (
    BASE_RADIUS,
    FACTOR_NAMES,
    FACTOR_SIZES,
    SCALE_VALUES,
    SHAPE_NAMES,
    load_shapes,
    position_values,
    render,
    sample_factors,
)

SIZE = 32
SQUARE, ELLIPSE, TRIANGLE = 0, 1, 2
AREAS = {SQUARE: 2.0, ELLIPSE: math.pi / 2, TRIANGLE: 3 * math.sqrt(3) / 4}  # in units of circumradius^2


def one(shape=ELLIPSE, scale=5, rotation=0, x=8, y=8, size=SIZE) -> np.ndarray:
    """A single image (size, size) for the given factor indices."""
    return render(np.array([[shape, scale, rotation, x, y]]), size)[0]


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return float(cols.mean() + 0.5), float(rows.mean() + 0.5)  # (x, y) in pixel coordinates


def extent(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(img)
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)  # (width, height)


def test_factor_tables_and_sampling():
    assert FACTOR_NAMES == ("shape", "scale", "rotation", "pos_x", "pos_y") and FACTOR_SIZES == (3, 6, 16, 16, 16)
    assert len(SHAPE_NAMES) == 3 and np.allclose(SCALE_VALUES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    f = sample_factors(5000, np.random.default_rng(0))
    assert f.shape == (5000, 5) and f.dtype == np.int64
    for k, n_values in enumerate(FACTOR_SIZES):
        assert np.array_equal(np.unique(f[:, k]), np.arange(n_values))  # every value, none outside
    assert np.array_equal(f, sample_factors(5000, np.random.default_rng(0)))
    assert not np.array_equal(f, sample_factors(5000, np.random.default_rng(1)))


def test_render_gives_binary_images_of_the_requested_size():
    f = sample_factors(300, np.random.default_rng(1))
    for size in (32, 48):
        images = render(f, size)
        assert images.shape == (300, size, size) and images.dtype == np.uint8
        assert set(np.unique(images)) == {0, 1}
        assert (images.reshape(300, -1).sum(axis=1) > 0).all()  # every image shows a shape
    with pytest.raises(ValueError, match="out of range"):
        render(np.array([[3, 0, 0, 0, 0]]), SIZE)


def test_load_shapes_is_deterministic_by_seed():
    train, test = load_shapes(300, 100, seed=3, size=SIZE)
    train2, test2 = load_shapes(300, 100, seed=3, size=SIZE)
    assert torch.equal(train.images, train2.images) and torch.equal(test.images, test2.images)
    assert torch.equal(train.factors, train2.factors)
    other, _ = load_shapes(300, 100, seed=4, size=SIZE)
    assert not torch.equal(train.factors, other.factors) and not torch.equal(train.images, other.images)
    # Each split depends only on the seed and its own size: a bigger train split extends the smaller.
    bigger, test3 = load_shapes(600, 100, seed=3, size=SIZE)
    assert torch.equal(bigger.factors[:300], train.factors) and torch.equal(test3.factors, test.factors)


def test_splits_are_disjoint_and_images_match_their_factors():
    train, test = load_shapes(20_000, 2_000, seed=0, size=SIZE)
    assert train.images.shape == (20_000, 1, SIZE, SIZE) and test.images.shape == (2_000, 1, SIZE, SIZE)
    train_rows = {tuple(r) for r in train.factors.tolist()}
    assert len(train_rows) == 20_000  # drawn without replacement
    assert not train_rows & {tuple(r) for r in test.factors.tolist()}
    assert np.array_equal(render(test.factors.numpy(), SIZE), test.images[:, 0].numpy())
    assert torch.equal(train.labels, train.factors[:, 0]) and train.class_names == SHAPE_NAMES


def test_moving_x_or_y_one_step_shifts_the_centre_of_mass_by_the_step():
    positions = position_values(SIZE)
    step = positions[1] - positions[0]
    assert step == pytest.approx((SIZE - 2 * BASE_RADIUS * SIZE) / 15)
    for shape in (SQUARE, ELLIPSE, TRIANGLE):
        for rotation in (0, 1, 3):
            xs = np.array([centre_of_mass(one(shape, rotation=rotation, x=i))[0] for i in range(16)])
            ys = np.array([centre_of_mass(one(shape, rotation=rotation, y=i))[1] for i in range(16)])
            # Over the 16 steps the centre moves by `step` per step; single steps are quantised to the
            # pixel grid (an axis-aligned edge moves in whole pixels), hardest for rotation 0.
            assert np.polyfit(np.arange(16), xs, 1)[0] == pytest.approx(step, abs=0.03)
            assert np.polyfit(np.arange(16), ys, 1)[0] == pytest.approx(step, abs=0.03)
            assert np.abs(np.diff(xs) - step).max() < (0.6 if rotation == 0 else 0.2)
            assert np.abs(np.diff(ys) - step).max() < (0.6 if rotation == 0 else 0.2)
            # Moving x leaves the vertical centre where it was, up to rasterisation.
            assert np.ptp([centre_of_mass(one(shape, rotation=rotation, x=i))[1] for i in range(16)]) < 0.25
    assert centre_of_mass(one(ELLIPSE, rotation=1, x=3, y=11)) == pytest.approx((positions[3], positions[11]), abs=0.2)


def test_larger_scale_gives_more_pixels_close_to_the_shapes_area():
    grid = np.array([[r, x, y] for r in range(16) for x in range(16) for y in (0, 7, 15)])  # (768, 3)
    for shape, area in AREAS.items():
        images = np.stack([render(np.c_[np.full(len(grid), shape), np.full(len(grid), s), grid], SIZE)
                           for s in range(6)])  # (6, 768, SIZE, SIZE)
        # Scaling about the centre nests the shapes: each pixel on at one scale stays on at the next.
        assert (images[:-1] <= images[1:]).all()
        counts = images.reshape(6, len(grid), -1).sum(axis=2)  # (6, 768)
        assert (counts[-1] > 2.5 * counts[0]).all()
        # Averaged over sub-pixel offsets the pixel count estimates the area (in units of the circumradius).
        radii = BASE_RADIUS * SIZE * SCALE_VALUES
        assert counts.mean(axis=1) == pytest.approx(area * radii**2, rel=0.04)
        assert (np.diff(counts.mean(axis=1)) > 0).all()


def test_the_three_shapes_differ():
    images = [one(shape).astype(int) for shape in (SQUARE, ELLIPSE, TRIANGLE)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(images[i] - images[j]).sum() > 20
    top_row, bottom_row = np.nonzero(images[TRIANGLE].any(axis=1))[0][[0, -1]]
    assert images[TRIANGLE][top_row].sum() < images[TRIANGLE][bottom_row].sum()  # apex up at rotation 0


def test_rotation_turns_an_ellipse_and_keeps_its_area():
    images = [one(ELLIPSE, rotation=r) for r in range(16)]
    counts = np.array([img.sum() for img in images])
    assert np.abs(counts / counts.mean() - 1).max() < 0.08
    assert all(np.abs(images[r].astype(int) - images[r + 1]).sum() > 5 for r in range(15))
    wide, tall = extent(images[0]), extent(images[4])  # rotation 0 and a quarter turn (4 of 16 steps)
    assert wide[0] > 1.6 * wide[1] and tall[1] > 1.6 * tall[0]
    assert wide[0] == pytest.approx(tall[1], abs=1)


def test_shapes_stay_within_their_circle_which_stays_inside_the_image():
    positions = position_values(SIZE)
    radius = BASE_RADIUS * SIZE * SCALE_VALUES[-1]  # the largest circumradius
    assert positions[0] - radius >= 0 and positions[-1] + radius <= SIZE
    f = np.array([[shape, 5, r, x, y] for shape in range(3) for r in range(16) for x in (0, 15) for y in (0, 15)])
    images = render(f, SIZE)
    centres = np.arange(SIZE) + 0.5
    dist = np.hypot(centres[None, None, :] - positions[f[:, 3], None, None],
                    centres[None, :, None] - positions[f[:, 4], None, None])  # (n, SIZE, SIZE)
    on_dist = np.where(images == 1, dist, 0).reshape(len(f), -1).max(axis=1)  # farthest "on" pixel centre
    assert (on_dist <= radius).all()  # so no shape reaches past the image edge
    assert (on_dist > radius - 1.5).all()  # and the circle is tight: corners, apex, ends come near it


def test_load_dataset_gives_the_shapes_with_their_factors():
    cfg = DataConfig(dataset="shapes", shapes_train=200, shapes_test=50)
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert len(train) == 200 and len(test) == 50 and train.shape == (1, 32, 32)
    assert train.levels == 2 and train.name == "shapes" and train.factor_names == FACTOR_NAMES
    assert train.factors.shape == (200, 5) and train.factors.dtype == torch.int64
    expected, expected_test = load_shapes(200, 50, seed=0, size=32)
    assert torch.equal(train.images, expected.images) and torch.equal(test.factors, expected_test.factors)
    # Binarizing the {0, 1} levels reproduces the images exactly.
    x = to_unit(train.images, train.levels, "binarize", torch.Generator().manual_seed(0))
    assert torch.equal(x, train.images.float())
    # Subsets keep the factors aligned with the images.
    head = load_dataset(DataConfig(dataset="shapes", shapes_train=200, shapes_test=50, limit_train=30), "train")
    assert len(head) == 30 and torch.equal(head.factors, train.factors[:30])
    held = _holdout(train, 0.2, "test")
    assert len(held) == 40 and held.factors.shape == (40, 5)
    assert np.array_equal(render(held.factors.numpy(), 32), held.images[:, 0].numpy())
