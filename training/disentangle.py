"""Disentanglement study: VAE, beta-VAE and beta-TCVAE trained on the generated shapes (known factors),
compared by MIG, ELBO, reconstruction and total correlation, with latent-traversal grids.

    python -m training disentangle --out docs/disentanglement [--epochs 20]

Writes results.json, results.md (the table) and traversal_<variant>.png: one row per latent dimension
(most informative first, by its mean KL), columns z_d from -3 to 3 with the other dimensions at a test
image's posterior mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from training.checkpoint import load_checkpoint
from training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from training.data import ImageData, load_dataset, to_unit
from training.distributions import kl_to_standard_normal
from training.evaluate import evaluate_elbo
from training.latent import LatentModel
from training.mig import mutual_information_gap
from training.plots import save_grid
from training.tcvae import kl_decomposition
from training.trainer import train


@dataclass
class Variant:
    name: str
    objective: Literal["elbo", "tcvae"]
    beta: float = 1.0  # KL weight (beta-VAE)
    tc_beta: float = 6.0  # total-correlation weight (beta-TCVAE)

    def describe(self) -> str:
        if self.objective == "tcvae":
            return f"beta-TCVAE (TC weight {self.tc_beta:g})"
        return "VAE" if self.beta == 1 else f"beta-VAE (beta {self.beta:g})"


VARIANTS = (Variant("vae", "elbo"), Variant("beta-vae", "elbo", beta=4.0), Variant("beta-tcvae", "tcvae", tc_beta=6.0))


@dataclass
class Result:
    variant: str
    description: str
    mig: float
    mig_per_factor: dict[str, float]
    elbo: float  # test, nats per image
    reconstruction: float
    kl: float
    total_correlation: float  # KDE estimate on the test codes (dataset_size = 1 in kl_decomposition)
    active_dims: int  # latent dimensions with mean KL > 0.01 nats


def run_config(variant: Variant, runs: Path, epochs: int, seed: int, warmup_steps: int = 200) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="shapes", shapes_train=20000, shapes_test=2000),
        model=ModelConfig(arch="mlp", latent_dim=10, hidden=(512, 256), likelihood="bernoulli"),
        train=TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, lr_warmup_steps=warmup_steps, seed=seed,
                          beta=variant.beta, objective=variant.objective, tc_beta=variant.tc_beta,
                          out_dir=str(runs / variant.name), progress=False),
    )


@torch.no_grad()
def assess(variant: Variant, model: LatentModel, test: ImageData, seed: int) -> Result:
    x = to_unit(test.images, test.levels, "binarize", torch.Generator().manual_seed(seed))  # binary: exact
    (q,) = model.encode(x)  # the flat model of the study: one level
    if test.factors is None:
        raise ValueError(f"{test.name} has no generating factors: the study needs the shapes data")
    mig = mutual_information_gap(q.mu.numpy(), test.factors.numpy())
    parts = evaluate_elbo(model, test, "binarize", seed=seed)
    z = q.rsample(torch.Generator().manual_seed(seed))
    tc = float(kl_decomposition(z.double(), q.mu.double(), q.logvar.double(), dataset_size=1).total_correlation.mean())
    per_dim_kl = kl_to_standard_normal(q.mu, q.logvar).mean(0)
    return Result(variant.name, variant.describe(), float(mig.mig),
                  {n: float(v) for n, v in zip(test.factor_names, mig.per_factor, strict=True)},
                  parts["elbo"], parts["reconstruction"], parts["kl"], tc, int((per_dim_kl > 0.01).sum()))


@torch.no_grad()
def traversal(model: LatentModel, test: ImageData, path: Path, steps: int = 9, span: float = 3.0) -> Path:
    x = to_unit(test.images[:1], test.levels, "binarize", torch.Generator().manual_seed(0))
    (q,) = model.encode(x)
    (all_q,) = model.encode(to_unit(test.images, test.levels, "binarize", torch.Generator().manual_seed(0)))
    order = torch.argsort(kl_to_standard_normal(all_q.mu, all_q.logvar).mean(0), descending=True)
    values = torch.linspace(-span, span, steps)
    rows = []
    for d in order.tolist():
        z = q.mu.repeat(steps, 1)  # (steps, D)
        z[:, d] = values
        rows.append(model.decode(z).mean())
    return save_grid(torch.cat(rows), path, ncols=steps)


def to_markdown(results: list[Result], factor_names: tuple[str, ...]) -> str:
    head = ("| model | MIG | " + " | ".join(f"MIG {n}" for n in factor_names)
            + " | test ELBO | reconstruction | KL | total correlation | active dims |")
    lines = [head, "|" + " --- |" * (7 + len(factor_names))]
    for r in results:
        lines.append(f"| {r.description} | {r.mig:.3f} | " + " | ".join(f"{r.mig_per_factor[n]:.3f}"
                                                                        for n in factor_names)
                     + f" | {r.elbo:.1f} | {r.reconstruction:.1f} | {r.kl:.1f} | {r.total_correlation:.2f}"
                     + f" | {r.active_dims} |")
    return "\n".join(lines) + "\n"


def run(out: Path, epochs: int = 20, seed: int = 0, variants: tuple[Variant, ...] = VARIANTS,
        data_overrides: dict | None = None, warmup_steps: int = 200, runs: Path = Path("runs/disentangle")
        ) -> list[Result]:
    """Train each variant (checkpoints under `runs`), assess it, write the table and grids to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    test = None
    for variant in variants:
        cfg = run_config(variant, runs, epochs, seed, warmup_steps)
        for key, value in (data_overrides or {}).items():
            setattr(cfg.data, key, value)
        model = load_checkpoint(train(cfg)).build_model()
        test = test or load_dataset(cfg.data, "test")
        results.append(assess(variant, model, test, seed))
        traversal(model, test, out / f"traversal_{variant.name}.png")
    assert test is not None
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out / "results.md").write_text(to_markdown(results, test.factor_names))
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    from training.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m training disentangle", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/disentanglement"),
                        help="where the runs, results.md, results.json and the traversals go")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of each of the three models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs and of the assessment")
    args = parser.parse_args(argv)
    results = run(args.out, args.epochs, args.seed)
    print((args.out / "results.md").read_text())
    return 0 if all(math.isfinite(r.mig) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

