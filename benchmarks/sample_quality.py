"""Sample quality of every model folder, as users meet it through /sample: 10,000 samples (the likelihood's mean
at z from the prior, as the service makes them, seed 0) against the 10,000 Fashion-MNIST test images, in the
feature space of the project's own classifier (training/classifier.py, trained once into runs/classifier/).
Also the floor: 10,000 training images against the test images.

    python benchmarks/sample_quality.py [--models models] [--n 10000] [--out benchmarks/results]

Reports per row: FID, precision and recall (k = 3), the share of images the classifier labels with p > 0.9,
and the classifier's test accuracy; writes sample-quality.md and sample-quality.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.manifest import load_manifest  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.model import ServedModel, load_model  # noqa: E402
from service.offload import Workers  # noqa: E402
from service.registry import load_options  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.classifier import load_or_train, predict  # noqa: E402
from training.config import DataConfig  # noqa: E402
from training.data import load_dataset, to_unit  # noqa: E402
from training.quality import confident_share, frechet_distance, precision_recall  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def served_samples(model: ServedModel, n: int, seed: int = 0) -> np.ndarray:
    """What /sample?n=..&seed=.. returns (without its n limit): the likelihood's mean at ancestral prior draws."""
    z = asyncio.run(model.sample_latents(n, np.random.default_rng(seed), 1.0))
    images = [model.likelihood.mean(model.decode(z[start : start + 1000].astype(np.float32)))
              for start in range(0, n, 1000)]
    return np.clip(np.concatenate(images), 0.0, 1.0)


def row(name: str, images: torch.Tensor, classifier, real_features: np.ndarray, seconds: float) -> dict:
    features, probabilities = (t.numpy() for t in predict(classifier, images))
    precision, recall = precision_recall(real_features, features)
    return {"name": name, "images": len(images), "fid": frechet_distance(real_features, features),
            "precision": precision, "recall": recall, "confident": confident_share(probabilities),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder of model folders")
    parser.add_argument("--n", type=int, default=10_000, help="samples per model (and training images)")
    parser.add_argument("--classifier", type=Path, default=ROOT / "runs" / "classifier",
                        help="where the classifier is kept (trained there first if absent)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    trained = load_or_train(args.classifier)
    print(f"classifier: test accuracy {trained.test_accuracy:.4f} ({time.perf_counter() - started:.0f} s)")
    data = DataConfig(dataset="fashion-mnist")
    test, train = load_dataset(data, "test"), load_dataset(data, "train").head(args.n)
    real_features = predict(trained.model, to_unit(test.images, test.levels, "plain"))[0].numpy()
    rows = []
    for name, images in [("test images (themselves)", to_unit(test.images, test.levels, "plain")),
                         ("training images (the floor)", to_unit(train.images, train.levels, "plain"))]:
        t = time.perf_counter()
        rows.append(row(name, images, trained.model, real_features, 0.0))
        rows[-1]["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps(rows[-1]))
    options = load_options(Settings(providers="CPUExecutionProvider", batching=False), Metrics(), Workers(2))
    for folder in sorted(p for p in args.models.iterdir() if (p / "manifest.json").is_file()):
        if load_manifest(folder).training.dataset != "fashion-mnist":
            continue
        t = time.perf_counter()
        samples = torch.from_numpy(served_samples(load_model(folder, options), args.n))
        rows.append(row(folder.name, samples, trained.model, real_features, 0.0))
        rows[-1]["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps(rows[-1]))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"classifier_test_accuracy": trained.test_accuracy, "n": args.n, "rows": rows,
              "command": "python benchmarks/sample_quality.py"}
    (args.out / "sample-quality.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Classifier (training/classifier.py) test accuracy {trained.test_accuracy:.4f}; {args.n} images per row "
             "against the 10,000 test images; samples as /sample makes them (seed 0).", "",
             "| images | FID | precision | recall | p > 0.9 |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['name']} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['confident']:.3f} |"
              for r in rows]
    (args.out / "sample-quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
