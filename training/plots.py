"""Pictures: image grids (PNG, via Pillow) and the loss curve (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2, scale: int = 2) -> Image.Image:
    """(N, C, H, W) values in [0, 1] (clipped) -> one PNG-ready image, ncols wide, white padding."""
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    arr = (images.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (N, C, H, W)
    grid = np.full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), 255, np.uint8)
    for i in range(n):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        grid[:, top : top + h, left : left + w] = arr[i]
    img = Image.fromarray(grid[0] if c == 1 else grid.transpose(1, 2, 0))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def save_grid(images: torch.Tensor, path: Path, ncols: int | None = None) -> Path:
    image_grid(images, ncols).save(path)
    return path


def plot_loss_curve(history: list[dict[str, Any]], path: Path) -> Path:
    """Train and test ELBO per dimension against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_elbo_per_dim"] for row in history], label="train ELBO / dim")
    ax.plot(epochs, [row["test_elbo_per_dim"] for row in history], label="test ELBO / dim")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per dimension")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
