"""Evaluation of a trained model on its test split: ELBO, importance-sampled log-likelihood (K draws,
float64), bits per dimension, and PNG grids of reconstructions and samples.

    python -m training evaluate --checkpoint runs/fashion-mnist/checkpoint.pt --k 5000
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from service.manifest import bits_per_dim
from training.data import ImageData, to_unit
from training.elbo import elbo
from training.estimators import log_likelihood
from training.latent import LatentModel
from training.plots import save_grid


@dataclass
class EvalReport:
    dataset: str
    num_images: int
    elbo: float  # mean test ELBO, nats per image
    elbo_per_dim: float
    log_likelihood: float  # mean importance-sampled log Pr(x), nats per image
    log_likelihood_stderr: float  # standard error of that mean over images
    k: int
    bits_per_dim: float | None  # from the log-likelihood; None where undefined (service.manifest.bits_per_dim)
    elbo_bits_per_dim: float | None
    mean_effective_sample_size: float
    pixel_mode: str
    seed: int
    seconds: float
    # the mean over images of each estimate's own standard error, sqrt(1 / ESS - 1 / K); None in an eval.json
    # written before it was reported
    mean_sampling_stderr: float | None = None


@torch.no_grad()
def evaluate_elbo(model: LatentModel, data: ImageData, mode: str, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean ELBO and its parts with fixed noise (seed), so epochs compare like for like."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    for start in range(0, len(data), batch_size):
        x = to_unit(data.images[start : start + batch_size], data.levels, mode, gen)
        for key, value in elbo(model, x, generator=gen).summary().items():
            totals[key] = totals.get(key, 0.0) + value * len(x)
    model.train(was_training)
    return {key: value / len(data) for key, value in totals.items()}


@torch.no_grad()
def evaluate(model: LatentModel, data: ImageData, mode: str, k: int, seed: int = 0, batch_size: int = 100,
             chunk: int = 250, progress: bool = True) -> EvalReport:
    """Test ELBO and log-likelihood of every image in `data` (its pixels drawn with `seed`)."""
    model.eval()
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)  # pixels (dequantization) and the ELBO's draw
    rng = np.random.default_rng(seed)  # the importance samples (see training.estimators)
    num_dims = math.prod(data.shape)
    elbo_sum = 0.0
    lls, ess, stderr = [], [], []
    for start in tqdm(range(0, len(data), batch_size), desc=f"log-likelihood K={k}", disable=not progress):
        x = to_unit(data.images[start : start + batch_size], data.levels, mode, gen)
        elbo_sum += float(elbo(model, x, generator=gen).elbo.double().sum())
        # draws per decoder pass: fewer for a likelihood of several maps per pixel, so the float64 log-densities
        # of a pass stay the size of `chunk` mean images (results do not depend on it)
        result = log_likelihood(model, x, k, max(1, chunk // model.likelihood.params_per_channel), rng)
        lls.append(result.log_likelihood)
        ess.append(result.effective_sample_size)
        stderr.append(result.stderr)
    ll = torch.cat(lls)
    mean_ll, mean_elbo = float(ll.mean()), elbo_sum / len(data)
    return EvalReport(
        dataset=data.name, num_images=len(data), elbo=mean_elbo, elbo_per_dim=mean_elbo / num_dims,
        log_likelihood=mean_ll, log_likelihood_stderr=float(ll.std() / math.sqrt(len(ll))) if len(ll) > 1 else 0.0,
        k=k, bits_per_dim=bits_per_dim(mean_ll, num_dims, mode, data.levels),
        elbo_bits_per_dim=bits_per_dim(mean_elbo, num_dims, mode, data.levels),
        mean_effective_sample_size=float(torch.cat(ess).mean()), mean_sampling_stderr=float(torch.cat(stderr).mean()),
        pixel_mode=mode, seed=seed,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def save_pictures(model: LatentModel, data: ImageData, mode: str, out_dir: Path, seed: int = 0, n: int = 64
                  ) -> list[Path]:
    """reconstructions.png (odd columns originals, even ones their decoded posterior means),
    samples.png (means f[z], z ~ prior) and samples_noise.png (x = f[z] + sigma * eps)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    x = to_unit(data.images[: n // 2], data.levels, mode, gen)
    recon = model.reconstruct(x)
    pairs = torch.stack([x, recon], 1).flatten(0, 1)  # (n, C, H, W): original, reconstruction, ...
    paths = [save_grid(pairs, out_dir / "reconstructions.png", ncols=8)]
    paths.append(save_grid(model.sample(n, torch.Generator().manual_seed(seed)), out_dir / "samples.png", ncols=8))
    noisy = model.sample(n, torch.Generator().manual_seed(seed), noise=True)
    paths.append(save_grid(noisy, out_dir / "samples_noise.png", ncols=8))
    return paths


def write_report(report: EvalReport, path: Path) -> Path:
    path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return path


def read_report(path: Path) -> EvalReport:
    return EvalReport(**json.loads(path.read_text()))

