"""What /loglik's estimator costs against another version of it, in one process on the same model and inputs:
the bare `service.estimator.log_likelihood` (no HTTP), best of `--repeats` per case, the two alternating.

    python benchmarks/estimator_cost.py --ref 3e9922c [--model models/fashion-mnist]

`--ref`: a git revision whose service/estimator.py is loaded beside the current one (it must work with the
current service package). Used for issue 15's fitted proposal (docs/performance.md, "The log-likelihood's
proposal fit").
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.estimator import log_likelihood  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.model import load_model  # noqa: E402
from service.offload import Workers  # noqa: E402
from service.registry import load_options  # noqa: E402
from service.settings import Settings  # noqa: E402

CASES = ((1, 1000), (16, 1000), (64, 1000), (1, 5000))  # (images, k)


def estimator_at(ref: str):
    source = subprocess.run(["git", "show", f"{ref}:service/estimator.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "estimator_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("estimator_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module.log_likelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="git revision to compare with")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "fashion-mnist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4096, help="decoder rows per pass (VAE_LOGLIK_BATCH_ROWS)")
    args = parser.parse_args()
    settings = Settings(providers="CPUExecutionProvider", batching=False)
    model = load_model(args.model, load_options(settings, Metrics(), Workers(2)))
    versions = {args.ref: estimator_at(args.ref), "current": log_likelihood}
    rng = np.random.default_rng(0)
    print(f"`python benchmarks/estimator_cost.py --ref {args.ref}`, {args.model.name}, best of {args.repeats} (ms):\n")
    print(f"| images | k | {args.ref} | current | ratio |\n| --- | --- | --- | --- | --- |")
    for n, k in CASES:
        x = rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)
        best = {name: float("inf") for name in versions}
        for _ in range(args.repeats):
            for name, estimate in versions.items():
                started = time.perf_counter()
                estimate(model, x, k, 0, chunk=max(1, args.rows // n))
                best[name] = min(best[name], time.perf_counter() - started)
        old, new = best[args.ref] * 1000, best["current"] * 1000
        print(f"| {n} | {k} | {old:.0f} | {new:.0f} | {new / old:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
