"""Pictures: image grids (PNG, via Pillow) and the loss curve (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from service.images import grid, to_uint8


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2, scale: int = 2) -> Image.Image:
    """(N, C, H, W) values in [0, 1] (clipped) -> one PNG-ready image: service.images.grid's layout (ncols
    wide, default a square; white padding), 8-bit, scaled up `scale` times (nearest neighbour)."""
    levels = to_uint8(grid(images.numpy(), ncols, pad))  # (C, H', W'); the clipping is to_uint8's
    img = Image.fromarray(levels[0] if levels.shape[0] == 1 else levels.transpose(1, 2, 0))
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale > 1 else img


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
