"""How far the served log-likelihood has converged, per image, for every Fashion-MNIST model folder: on the first
N test images (as the service maps their pixels), the K=5000 estimate with 4 seeds and the K=1000 one.

    python benchmarks/convergence.py [--models models] [--images 1000] [--out benchmarks/results]

Reports per model: the mean over images of the standard deviation across the 4 seeds, the mean absolute
change (and the mean rise) from K=1000 to K=5000, the effective sample size's median and 10th percentile at
K=5000, and the mean reported standard error sqrt(1/ESS - 1/K); writes convergence.md and convergence.json.
Issue 15's target for the default model: spread and change both under 0.3 nats per image on average.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.estimator import log_likelihood  # noqa: E402
from service.manifest import load_manifest, served_pixel_values  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.model import load_model  # noqa: E402
from service.offload import Workers  # noqa: E402
from service.registry import load_options  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.config import DataConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS, K_HIGH, K_LOW = 4, 5000, 1000


def measure(folder: Path, levels_8bit: np.ndarray, batch: int = 8) -> dict:
    manifest = load_manifest(folder)
    model = load_model(folder, load_options(Settings(providers="CPUExecutionProvider", batching=False), Metrics(),
                                            Workers(2)))
    table, _ = served_pixel_values(manifest.image.pixel_mode, manifest.image.levels)
    x = table[levels_8bit]  # (N, 1, 28, 28): what /loglik feeds the model for these files
    started = time.perf_counter()
    high, low, ess, stderr = [], [], [], []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        runs = [log_likelihood(model, xb, K_HIGH, seed, chunk=max(1, 4096 // len(xb))) for seed in range(SEEDS)]
        high.append(np.stack([r.log_likelihood for r in runs]))  # (seeds, B)
        low.append(log_likelihood(model, xb, K_LOW, 0, chunk=max(1, 4096 // len(xb))).log_likelihood)
        ess.append(runs[0].effective_sample_size)
        stderr.append(runs[0].stderr)
    h, lo, e = np.concatenate(high, 1), np.concatenate(low), np.concatenate(ess)
    return {"model": folder.name, "images": len(x), "mean_log_likelihood": float(h[0].mean()),
            "spread_across_seeds": float(h.std(0, ddof=1).mean()),
            "change_k1000_to_k5000": float(np.abs(h[0] - lo).mean()), "rise_k1000_to_k5000": float((h[0] - lo).mean()),
            "ess_median": float(np.median(e)), "ess_p10": float(np.percentile(e, 10)),
            "mean_reported_stderr": float(np.concatenate(stderr).mean()),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder of model folders")
    parser.add_argument("--images", type=int, default=1000, help="the first N test images")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    test = load_dataset(DataConfig(dataset="fashion-mnist", limit_test=args.images), "test")
    levels_8bit = test.images.numpy()
    rows = []
    for folder in sorted(p for p in args.models.iterdir() if (p / "manifest.json").is_file()):
        if load_manifest(folder).training.dataset == "fashion-mnist":
            rows.append(measure(folder, levels_8bit))
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/convergence.py --images {args.images}"
    (args.out / "convergence.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = [f"`{command}`: the first {args.images} test images; K={K_HIGH} with seeds 0-{SEEDS - 1}, K={K_LOW} "
             "with seed 0 (nats per image).", "",
             "| model | mean log-lik. | spread across seeds | change K=1000 -> 5000 (rise) | ESS median (p10) | "
             "reported s.e. |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['mean_log_likelihood']:.2f} | {r['spread_across_seeds']:.3f} | "
              f"{r['change_k1000_to_k5000']:.3f} ({r['rise_k1000_to_k5000']:+.3f}) | {r['ess_median']:.2f} "
              f"({r['ess_p10']:.2f}) | {r['mean_reported_stderr']:.3f} |" for r in rows]
    (args.out / "convergence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
