"""A dataset split held in memory: integer pixel levels, labels and (where known) generating factors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class ImageData:
    images: torch.Tensor  # (N, C, H, W) uint8 pixel levels
    labels: torch.Tensor  # (N,) int64, -1 where unlabelled
    levels: int  # number of pixel levels: 256 for 8-bit images, 17 for the digits, 2 for binary shapes
    class_names: tuple[str, ...]
    name: str
    # The generating factors of each image, (N, K) int64 value indices, where the data has them (shapes);
    # disentanglement metrics compare them with the codes. Subsets must index them with the images.
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def head(self, n: int) -> ImageData:
        if n <= 0 or n >= len(self):
            return self
        return self.subset(slice(0, n))

    def subset(self, idx: slice | torch.Tensor) -> ImageData:
        """The images picked by `idx`, with their labels and factors."""
        factors = None if self.factors is None else self.factors[idx]
        return replace(self, images=self.images[idx], labels=self.labels[idx], factors=factors)
