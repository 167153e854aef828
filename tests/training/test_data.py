"""The data sources on real files: Fashion-MNIST's IDX files, scikit-learn's digits, an image folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from service.manifest import served_pixel_values
from training.config import DataConfig
from training.data import (
    FASHION_MNIST_DIR,
    DatasetNotFoundError,
    load_dataset,
    load_fashion_mnist,
    pixel_mode,
    to_unit,
)


def test_fashion_mnist_reader_returns_the_full_splits():
    train = load_fashion_mnist(FASHION_MNIST_DIR, "train")
    test = load_fashion_mnist(FASHION_MNIST_DIR, "test")
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.levels == 256
    for data, per_class in ((train, 6000), (test, 1000)):
        assert torch.equal(torch.bincount(data.labels), torch.full((10,), per_class))
    assert train.class_names[9] == "ankle boot"
    assert 0 < float(train.images.float().mean()) / 255 < 0.5  # mostly dark background, real pixels
    assert int(train.images.max()) == 255


def test_limits_cut_the_splits():
    cfg = DataConfig(dataset="fashion-mnist", limit_train=100, limit_test=30)
    assert len(load_dataset(cfg, "train")) == 100 and len(load_dataset(cfg, "test")) == 30


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(dataset="fashion-mnist", path=str(tmp_path)), "train")
    message = str(info.value)
    assert str(tmp_path) in message and "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(DataConfig(dataset="folder", path=str(tmp_path / "nope")), "train")


def test_digits_split_is_fixed_and_disjoint():
    cfg = DataConfig(dataset="digits")
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert len(train) + len(test) == 1797 and len(test) == round(1797 * 0.2)
    assert train.shape == (1, 8, 8) and train.levels == 17 and int(train.images.max()) == 16
    flat_train = {bytes(img.numpy()) for img in train.images}
    overlap = sum(bytes(img.numpy()) in flat_train for img in test.images)
    assert overlap < 5  # a few digits are pixel-identical; the splits share no index
    assert torch.equal(load_dataset(cfg, "test").images, test.images)


def test_image_folder_converts_size_and_channels_and_labels_by_subfolder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            arr = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    Image.fromarray(np.full((10, 10), 200, np.uint8)).save(tmp_path / "loose.png")
    cfg = DataConfig(dataset="folder", path=str(tmp_path), channels=1, height=16, width=12, test_fraction=0.0)
    data = load_dataset(cfg, "train")
    assert data.images.shape == (11, 1, 16, 12) and data.class_names == ("cats", "dogs")
    assert sorted(data.labels.tolist()) == [-1] + [0] * 5 + [1] * 5
    loose = data.images[data.labels == -1][0]
    assert int(loose.min()) == int(loose.max()) == 200  # resized constant image stays constant
    rgb = load_dataset(DataConfig(dataset="folder", path=str(tmp_path), channels=3, height=8, width=8), "test")
    assert rgb.images.shape[1:] == (3, 8, 8) and len(rgb) == round(11 * 0.2)


def test_pixel_modes():
    k = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    x = to_unit(k.expand(1000, 1, 1, 3), 256, "dequantize", torch.Generator().manual_seed(0))
    low, high = k.float() / 256, (k.float() + 1) / 256
    assert torch.all(x >= low) and torch.all(x < high)
    assert float(x[:, 0, 0, 0].mean()) == pytest.approx(0.5 / 256, rel=0.1)
    assert torch.equal(to_unit(k, 256, "plain"), k.float() / 255)
    b = to_unit(k.expand(2000, 1, 1, 3), 256, "binarize", torch.Generator().manual_seed(0))
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert b[:, 0, 0, 0].sum() == 0 and b[:, 0, 0, 2].min() == 1
    assert float(b[:, 0, 0, 1].mean()) == pytest.approx(128 / 255, abs=0.04)
    assert pixel_mode(DataConfig(dequantize=True), "bernoulli") == "binarize"
    assert pixel_mode(DataConfig(dequantize=False), "gaussian") == "plain"


@pytest.mark.parametrize("levels", [256, 17])
def test_to_unit_maps_every_level_as_the_manifest_pixel_modes_say(levels):
    """service.manifest.PIXEL_MODES, level by level: plain k / (L - 1), dequantize (k + u) / L in bin k,
    binarize Bernoulli(k / (L - 1))."""
    draws = 4000
    k = torch.arange(levels)
    every = k.repeat(draws, 1).view(draws, 1, 1, levels)  # each level once per draw
    gen = torch.Generator().manual_seed(0)
    exact = torch.from_numpy(np.arange(levels) / (levels - 1)).float()  # float64, rounded once to float32
    assert torch.equal(to_unit(k.view(1, 1, 1, levels), levels, "plain").flatten(), exact)
    x = to_unit(every, levels, "dequantize", gen).view(draws, levels)
    low, high = k.float() / levels, (k.float() + 1) / levels
    # [k / L, (k + 1) / L): float32's k + u rounds up to k + 1 only for u within half an ulp of k below 1
    # (about once in 2^17 draws at k >= 128 of 256), the one way x reaches the upper end.
    assert torch.all(x >= low) and torch.all(x <= high) and int((x == high).sum()) <= 1e-4 * x.numel()
    b = to_unit(every, levels, "binarize", gen).view(draws, levels)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(b[:, 0] == 0) and torch.all(b[:, -1] == 1)
    torch.testing.assert_close(b.mean(0), exact, rtol=0, atol=0.04)  # standard error <= 0.5 / sqrt(4000) = 0.008


def test_served_dequantized_values_are_the_middles_of_the_training_bins():
    """The service's deterministic 8-bit mapping puts level k at the middle of the bin [k / 256, (k + 1) / 256)
    that to_unit draws k from (the test above)."""
    table, _ = served_pixel_values("dequantize", 256)
    k = np.arange(256)
    assert np.array_equal(table, ((k + 0.5) / 256).astype(np.float32))  # exact: the denominators are powers of 2
    assert np.array_equal(np.floor(table * 256), k)
