"""docs/models.md: one model card per shipped Fashion-MNIST model folder, from its manifest, the figures of
benchmarks/sample_quality.py and benchmarks/convergence.py (their JSON in benchmarks/results/), and its active
latents measured here: the dimensions of the top level (z1 flat, z2 two-level), whose prior is Norm[0, I], with
mean KL[q(z_top|x) || Norm(0, 1)] over the first 1000 test images above 0.01 nats.

    make model-cards          (runs the two benchmarks, then this)
    python benchmarks/model_cards.py [--models models] [--results benchmarks/results] [--out docs/models.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.manifest import Manifest, load_manifest, served_pixel_values  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.model import load_model  # noqa: E402
from service.offload import Workers  # noqa: E402
from service.registry import DEFAULT_MODEL_NAME, load_options  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.config import DataConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def active_latents(folder: Path, manifest: Manifest, levels_8bit: np.ndarray) -> tuple[int, int]:
    """(active, total) dimensions of the top latent level on the images."""
    model = load_model(folder, load_options(Settings(providers="CPUExecutionProvider", batching=False), Metrics(),
                                            Workers(2)))
    table, _ = served_pixel_values(manifest.image.pixel_mode, manifest.image.levels)
    q = model.posterior(table[levels_8bit])[-1]
    kl = 0.5 * (q.mean.astype(np.float64) ** 2 + np.exp(q.logvar) - 1 - q.logvar).mean(0)  # (D,)
    return int((kl > 0.01).sum()), len(kl)


def architecture(manifest: Manifest) -> str:
    m = manifest.training.config["model"]
    body = f"MLP {'-'.join(map(str, m['hidden']))}" if m["arch"] == "mlp" else \
        f"{m['arch']} {'-'.join(map(str, m['conv_channels']))}" + (f", {m.get('res_blocks', 2)} residual blocks"
                                                                    if m["arch"] == "resnet" else "")
    levels = " -> ".join(f"z{i + 1} {d}" for i, d in reversed(list(enumerate(manifest.latent_levels))))
    return f"{body}; latents {levels}"


def likelihood(manifest: Manifest) -> str:
    lik = manifest.likelihood
    if lik.type == "gaussian":
        return f"gaussian (spherical), sigma {lik.sigma:.4f}" + (" (learned)" if lik.learned_sigma else "")
    return lik.type + (f", {lik.components} components" if lik.components else "")


def card(folder: Path, manifest: Manifest, quality: dict | None, convergence: dict | None, active: tuple[int, int],
         default: bool) -> list[str]:
    m, t = manifest.metrics, manifest.training
    lines = [f"## {manifest.name}" + (" (the service's default)" if default else ""), "", manifest.description, "",
             "| | |", "| --- | --- |",
             f"| likelihood | {likelihood(manifest)} |", f"| architecture | {architecture(manifest)} |",
             f"| training | {t.epochs} epochs, {t.steps} steps"
             + (f", {t.seconds / 60:.1f} min" if t.seconds else "") + f", seed {t.seed} |"]
    if m is not None:
        bpd = "" if m.bits_per_dim is None else f", {m.bits_per_dim:.3f} bits/dim"
        lines += [f"| test ELBO | {m.elbo:.2f} nats per image ({m.num_images} images) |",
                  f"| test log-likelihood | {m.log_likelihood:.2f} nats (K={m.log_likelihood_k}, standard error of "
                  f"the mean {m.log_likelihood_stderr:.2f}){bpd} |"]
    if convergence is not None:
        c = convergence
        lines.append(f"| convergence ({c['images']} images) | spread across 4 seeds {c['spread_across_seeds']:.2f} "
                     f"nats, change K=1000 -> 5000 {c['change_k1000_to_k5000']:.2f} nats, ESS median "
                     f"{c['ess_median']:.2f} |")
    if quality is not None:
        q = quality
        lines.append(f"| samples (10,000) | FID {q['fid']:.2f}, precision {q['precision']:.3f}, recall "
                     f"{q['recall']:.3f}, p > 0.9 for {100 * q['confident']:.1f}% |")
    top = len(manifest.latent_levels)
    lines.append(f"| active latents | {active[0]} of {active[1]} dimensions of z{top} (mean KL to its Norm[0, I] "
                 "prior > 0.01 nats) |")
    if (folder / "samples.png").is_file():
        lines += ["", f"![{manifest.name} samples](../models/{folder.name}/samples.png)"]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "models.md")
    args = parser.parse_args()
    quality_file, convergence_file = args.results / "sample-quality.json", args.results / "convergence.json"
    quality = json.loads(quality_file.read_text()) if quality_file.is_file() else {"rows": []}
    convergence = json.loads(convergence_file.read_text()) if convergence_file.is_file() else {"rows": []}
    by_name = {r["name"]: r for r in quality["rows"]}
    converged = {r["model"]: r for r in convergence["rows"]}
    levels_8bit = load_dataset(DataConfig(dataset="fashion-mnist", limit_test=1000), "test").images.numpy()
    default = Settings().default_model or DEFAULT_MODEL_NAME  # what the service serves without ?model=
    lines = ["# Shipped models", "", "One card per model folder under `models/`, written by "
             "`python benchmarks/model_cards.py` (`make model-cards` runs the measurements first). The sample "
             "figures come from `python benchmarks/sample_quality.py`, the convergence ones from "
             f"`{convergence.get('command', 'python benchmarks/convergence.py')}`.", ""]
    floor = by_name.get("training images (the floor)")
    if floor is not None:
        lines += [f"The floor, 10,000 training images against the test images: FID {floor['fid']:.2f}, precision "
                  f"{floor['precision']:.3f}, recall {floor['recall']:.3f}, p > 0.9 for "
                  f"{100 * floor['confident']:.1f}%; the classifier's test accuracy "
                  f"{quality['classifier_test_accuracy']:.4f}.", ""]
    for folder in sorted(p for p in args.models.iterdir() if (p / "manifest.json").is_file()):
        manifest = load_manifest(folder)
        if manifest.training.dataset != "fashion-mnist":
            continue
        lines += card(folder, manifest, by_name.get(folder.name), converged.get(folder.name),
                      active_latents(folder, manifest, levels_8bit), manifest.name == default)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
