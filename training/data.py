"""Datasets as in-memory integer pixel tensors, and their conversion to the model's [0, 1] values.

Sources: Fashion-MNIST from IDX files (Debian's `dataset-fashion-mnist`), scikit-learn's bundled 8x8
digits, a folder of the user's own PNG/JPEG images, or generated binary shapes with known generating
factors (training/shapes.py, for disentanglement metrics). Every source gives an `ImageData` holding
integer pixel levels k in {0, ..., levels - 1}; `to_unit` maps them to model inputs by one of the pixel
modes that `service.manifest.PIXEL_MODES` defines: dequantized (continuous models; Theis et al. 2016), plain,
or binarized (the Bernoulli model), the random ones drawn afresh each time.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from service.manifest import DISCRETE_LIKELIHOODS
from training.config import DataConfig
from training.image_data import ImageData
from training.shapes import shapes_split

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to get them."""


def to_unit(
    k: torch.Tensor, levels: int, mode: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Integer levels (N, C, H, W) -> float32 values in [0, 1] by the training-time pixel mapping of `mode`, as
    `service.manifest.PIXEL_MODES` defines it (dequantize | plain | binarize; u and the Bernoulli draws from
    `generator`)."""
    k = k.to(torch.float32, copy=True)  # (a copy even of float input: the dequantization below is in place)
    if mode == "dequantize":
        return k.add_(torch.rand(k.shape, generator=generator)).div_(levels)  # (k + u) / levels, in place
    plain = k / (levels - 1)
    if mode in ("plain", "discrete"):
        return plain
    if mode == "binarize":
        return torch.bernoulli(plain, generator=generator)
    raise ValueError(f"unknown pixel mode {mode!r}")


def pixel_mode(cfg: DataConfig, likelihood: str) -> str:
    """The Bernoulli model sees binary images; the discretized ones the levels themselves, x = k / (L - 1); the
    Gaussian ones dequantized (or plain) values."""
    if likelihood == "bernoulli":
        return "binarize"
    if likelihood in DISCRETE_LIKELIHOODS:
        return "discrete"
    return "dequantize" if cfg.dequantize else "plain"


def load_dataset(cfg: DataConfig, split: str) -> ImageData:
    """The `split` ('train' or 'test') of the configured dataset, cut to the configured limit."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if cfg.dataset == "fashion-mnist":
        data = load_fashion_mnist(Path(cfg.path) if cfg.path else FASHION_MNIST_DIR, split)
    elif cfg.dataset == "digits":
        data = _holdout(load_digits(), cfg.test_fraction, split)
    elif cfg.dataset == "folder":
        if not cfg.path:
            raise ValueError("data.path must name the image folder when data.dataset = 'folder'")
        data = load_image_folder(Path(cfg.path), cfg.channels, cfg.height, cfg.width, cfg.test_fraction, split)
    elif cfg.dataset == "shapes":
        data = shapes_split(split, cfg.shapes_train, cfg.shapes_test, cfg.shapes_seed, cfg.shapes_size)
    else:
        raise ValueError(f"unknown dataset {cfg.dataset!r}")
    return data.head(cfg.limit_train if split == "train" else cfg.limit_test)


def load_fashion_mnist(directory: Path, split: str) -> ImageData:
    """Read the IDX pair of one split: 60,000 train or 10,000 test 28x28 images with labels 0-9."""
    image_name, label_name = FASHION_MNIST_FILES[split]
    images = _read_idx(_find_idx(directory, image_name))
    labels = _read_idx(_find_idx(directory, label_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"malformed Fashion-MNIST files in {directory}: {images.shape} vs {labels.shape}")
    return ImageData(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        levels=256,
        class_names=FASHION_MNIST_CLASSES,
        name="fashion-mnist",
    )


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {directory}. Install Debian's package with "
        f"`apt-get install dataset-fashion-mnist` (files under {FASHION_MNIST_DIR}), or pass "
        "--data-path DIR (data.path) naming a folder with the four IDX files."
    )


def _read_idx(path: Path) -> np.ndarray:
    """IDX format: 2 zero bytes, a type code (0x08 = uint8), the rank, big-endian int32 dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    dims = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def load_digits() -> ImageData:
    """scikit-learn's bundled 1,797 8x8 digits, pixel values 0-16 (17 levels)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageData(images, labels, 17, tuple(str(d) for d in range(10)), "digits")


def _holdout(data: ImageData, test_fraction: float, split: str) -> ImageData:
    """A fixed (seed 0) permutation split, so train and test never overlap across runs."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    n_test = int(round(len(data) * test_fraction))
    idx = order[:n_test] if split == "test" else order[n_test:]
    return data.subset(idx)


def load_image_folder(
    root: Path, channels: int, height: int, width: int, test_fraction: float, split: str
) -> ImageData:
    """PNG/JPEG files under `root`, converted to `channels` (1 = grey, 3 = RGB) and height x width.

    Labels come from sub-folder names (`root/<class>/img.png`); images directly under `root` are
    unlabelled (-1). With `root/train` and `root/test` present, those are the splits; otherwise a fixed
    fraction is held out.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist (data.path / --data-path)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _read_folder(root / split, channels, height, width)
    return _holdout(_read_folder(root, channels, height, width), test_fraction, split)


def _read_folder(root: Path, channels: int, height: int, width: int) -> ImageData:
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3, got {channels}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetNotFoundError(f"no PNG or JPEG images found under {root}")
    class_names = tuple(sorted({p.parent.name for p in files if p.parent != root}))
    arrays, labels = [], []
    for path in files:
        with Image.open(path) as file:
            img = file.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
        arrays.append(arr.transpose(2, 0, 1))
        labels.append(class_names.index(path.parent.name) if path.parent != root else -1)
    return ImageData(
        images=torch.from_numpy(np.stack(arrays)),
        labels=torch.tensor(labels, dtype=torch.int64),
        levels=256,
        class_names=class_names,
        name=f"folder:{root.name}",
    )
