"""Attribute directions for resynthesis (Prince ch. 17, "Resynthesis"): the mean posterior latent of
each labelled class, so that the direction from class A to class B is mean_B - mean_A.

Computed at export from the labelled training split and stored with the model (attributes.json, listed in
the manifest); the service adds strength * (mean_B - mean_A) to an image's latent code and decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.data import ImageData, to_unit
from training.latent import LatentModel


@dataclass
class Attributes:
    names: list[str]
    means: torch.Tensor  # (A, D) mean posterior mean mu(x) over each class's images
    counts: list[int]
    source: str  # which data they were computed on


@torch.no_grad()
def class_means(model: LatentModel, data: ImageData, mode: str, batch_size: int = 2000, seed: int = 0) -> Attributes:
    """Mean of mu(x) per label over `data` (labels -1, unlabelled, are left out)."""
    labelled = data.labels >= 0
    if not bool(labelled.any()):
        raise ValueError(f"{data.name} has no labels: attribute directions need labelled images")
    gen = torch.Generator().manual_seed(seed)
    d = model.latent_dim
    sums = torch.zeros(len(data.class_names), d, dtype=torch.float64)
    counts = torch.zeros(len(data.class_names), dtype=torch.int64)
    model.eval()
    for start in range(0, len(data), batch_size):
        labels = data.labels[start : start + batch_size]
        x = to_unit(data.images[start : start + batch_size], data.levels, mode, gen)
        mu = model.encode(x)[0].mu.double()  # (B, D1): the level the decoder reads
        keep = labels >= 0
        sums.index_add_(0, labels[keep], mu[keep])
        counts += torch.bincount(labels[keep], minlength=len(data.class_names))
    present = counts > 0
    names = [n for n, p in zip(data.class_names, present.tolist(), strict=True) if p]
    means = (sums[present] / counts[present, None]).float()
    return Attributes(names, means, counts[present].tolist(), f"{data.name}: {int(counts.sum())} labelled images")
