"""The training benchmark: our trainer against the usual example loop, same model, objective and schedule;
with --step-costs, the trainer against itself with the step of before issue 15.

    python benchmarks/training.py [--epochs 3] [--repeats 2] [--limit 0] [--threads 2] [--out benchmarks/results]
                                  [--ablation] [--step-costs]

3 epochs on all 60,000 images, each loop twice, take about 3.5 minutes on 2 otherwise idle cores.

Both train configs/fashion-mnist.toml's model (MLP 1024-512, 32 latents, learned sigma, batch 128, Adam with
the warm-up + cosine schedule spanning --epochs, seed 0) on the first --limit Fashion-MNIST training images
(0: all 60,000), with the same torch thread count, each in a fresh Python process:
  - trainer: `training.trainer.train` itself (uint8 images in memory, index-slice batches, `train_step`,
    gradient clipping, a test ELBO and a checkpoint after each epoch); its progress bar is off.
  - plain loop: the shape of pytorch/examples vae/main.py: a Dataset whose __getitem__ converts one uint8
    image to a float tensor (as ToTensor does) and dequantizes it with `training.data.to_unit`, a
    DataLoader(batch_size=128, shuffle=True) with the default collate, and per step zero_grad, minus the
    ELBO of `training.elbo.elbo`, backward, the loss read with .item() (the example's log), the gradient
    norm clipped at the trainer's grad_clip, Adam's step (torch's default implementation); a test ELBO
    after each epoch. The example does not clip; without clipping the same steps train another model
    (a worse test ELBO at the same step), so the final ELBOs would not compare.
  - with --ablation, two more plain loops: without clipping (the example as written), and with the malloc
    settings the trainer had before issue 15 (`keep_freed_memory`): torch's default Adam allocates a
    temporary per operation and parameter, and glibc's defaults fault that memory back in every step.
Images/s and seconds per epoch time the training loop only (batches and steps); the run's wall time adds
loading the data and the per-epoch work after the loop. The test ELBO of each is
`training.evaluate.evaluate_elbo` on all 10,000 test images (seed 0) after the last epoch. Writes
training.md and training.json under --out.

--step-costs measures what the trainer gave up in issue 15 for public torch APIs only: four variants of
`training.trainer.train`, each in a fresh process, in a rotating order over --repeats rounds:
  - trainer: as it is (`torch.nn.utils.clip_grad_norm_(foreach=True)`, then fused Adam's step; glibc's malloc
    defaults);
  - malloc kept: the same with glibc told to keep freed memory (`keep_freed_memory`, through ctypes);
  - clipping in the step: `clipped_step` replaced by the one before issue 15, which hands the clipping
    coefficient to fused Adam as its `grad_scale` (a private attribute), so the step's own pass over the
    gradients scales them instead of a separate multiplication;
  - before issue 15: both.
Each figure is the median over the rounds; the ratios are medians of each round's ratio to the trainer.
Then the clipping alone, where a fresh process per run is too noisy to see it: both `clipped_step`s in one
process on one model, --pairs pairs of 20-step blocks, the order alternating (`paired_clipping`).
Writes training-step-costs.md and .json under --out. A short setting: --limit 38400 --epochs 1 (300 steps).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import trainer  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.config import RunConfig  # noqa: E402
from training.data import load_dataset, pixel_mode, to_unit  # noqa: E402
from training.elbo import elbo  # noqa: E402
from training.evaluate import evaluate_elbo  # noqa: E402
from training.models import build_model  # noqa: E402
from training.trainer import learning_rate, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "fashion-mnist.toml"


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the system (the trainer
    did this before issue 15): blocks below 32 MiB come from the heap, which is trimmed only when 256 MiB of it
    are free. Every step frees and allocates the same gradients and activations; with glibc's defaults the
    freed top of the heap goes back to the system and is faulted in again page by page. Nothing happens where
    the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)


def clipping_in_fused_step(optimizer: torch.optim.Optimizer, max_norm: float) -> bool:
    """`training.trainer.clipped_step` before issue 15 (commit 37c3d5a), kept here only to measure what its
    replacement costs: clip_grad_norm_'s coefficient handed to fused Adam as the `grad_scale` it divides the
    gradients by (meant for mixed precision), instead of a separate multiplication of every gradient.
    Private torch APIs: `torch._foreach_norm`, `optimizer.grad_scale`, `_step_supports_amp_scaling`."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        optimizer.step()
        return True
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if not torch.isfinite(norm):
        return False
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    if all(group.get("fused") for group in optimizer.param_groups) and getattr(
            optimizer, "_step_supports_amp_scaling", False):
        optimizer.grad_scale = 1.0 / coef  # type: ignore[attr-defined]
    else:
        torch._foreach_mul_(grads, coef)
    optimizer.step()
    return True


def run_config(epochs: int, limit: int, threads: int, out_dir: str) -> RunConfig:
    cfg = RunConfig.load(CONFIG)
    cfg.data.limit_train, cfg.data.limit_test = limit, 0
    cfg.train.epochs, cfg.train.threads, cfg.train.out_dir, cfg.train.progress = epochs, threads, out_dir, False
    return cfg


def trainer_run(cfg: RunConfig) -> dict:
    """Our trainer, as `python -m training train` runs it; its history has the per-epoch figures."""
    started = time.perf_counter()
    ckpt = load_checkpoint(train(cfg))
    wall = time.perf_counter() - started
    seconds = [row["epoch_seconds"] for row in ckpt.history]
    # test_elbo: evaluate_elbo(model, test split, seed) after the last epoch
    return summarize("trainer", seconds, cfg.train.epochs * ckpt.data.num_train, wall,
                     ckpt.history[-1]["test_elbo"], ckpt.data.num_test)


STEP_VARIANTS = {  # --step-costs: name -> (clipping folded into fused Adam's step, glibc keeps freed memory)
    "trainer": (False, False),
    "malloc kept": (False, True),
    "clipping in the step": (True, False),
    "before issue 15": (True, True),
}


def trainer_variant(cfg: RunConfig, name: str) -> dict:
    """`trainer_run` with one of STEP_VARIANTS' changes (this process only: it is a fresh one)."""
    fold_clipping, keep_memory = STEP_VARIANTS[name]
    if keep_memory:
        keep_freed_memory()
    if fold_clipping:
        trainer.clipped_step = clipping_in_fused_step  # train_step looks it up at each call
    return {**trainer_run(cfg), "loop": name}


def paired_clipping(cfg: RunConfig, pairs: int, block: int = 20, warmup: int = 50) -> dict:
    """Today's `clipped_step` and `clipping_in_fused_step` in one process on one model, so a slow spell of the
    machine falls on both: after `warmup` steps, `pairs` pairs of `block` steps, the order alternating.
    Returns the milliseconds per step of each block."""
    run = trainer.set_up(cfg)
    data, tc = run.train_data, cfg.train
    steps = {"trainer": trainer.clipped_step, "clipping in the step": clipping_in_fused_step}
    ms: dict[str, list[float]] = {name: [] for name in steps}
    batch = 0

    def time_steps(n: int) -> float:
        nonlocal batch
        started = time.perf_counter()
        for _ in range(n):
            start = batch * tc.batch_size % (len(data) - tc.batch_size + 1)  # full batches, cycling
            x = to_unit(data.images[start : start + tc.batch_size], data.levels, run.info.pixel_mode, run.data_gen)
            trainer.train_step(run.model, run.optimizer, x, tc.beta, tc.grad_clip, tc, len(data))
            batch += 1
        return (time.perf_counter() - started) / n * 1000

    time_steps(warmup)
    for pair in range(pairs):
        for name in list(steps) if pair % 2 == 0 else list(steps)[::-1]:
            trainer.clipped_step = steps[name]  # train_step looks it up at each call
            ms[name].append(time_steps(block))
    return {"block": block, "warmup": warmup, "ms_per_step": ms}


class PerSampleImages(Dataset):
    """One image per __getitem__, converted from the uint8 array as ToTensor would, then dequantized."""

    def __init__(self, images: np.ndarray, levels: int, mode: str):
        self.images, self.levels, self.mode = images, levels, mode  # (N, H, W) uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        k = torch.from_numpy(self.images[index]).unsqueeze(0)  # (1, H, W) uint8
        return to_unit(k, self.levels, self.mode)  # (1, H, W) float32, noise from the global generator


def plain_run(cfg: RunConfig, clip: bool = True, keep_memory: bool = False) -> dict:
    """The usual example loop on the same model, objective, optimizer settings, schedule and seed.

    clip: clip the gradient norm at the trainer's grad_clip (the example itself does not);
    keep_memory: glibc keeps freed memory (`keep_freed_memory`), as the trainer had it before issue 15.
    """
    tc = cfg.train
    torch.set_num_threads(tc.threads)
    if keep_memory:
        keep_freed_memory()
    started = time.perf_counter()
    train_data = load_dataset(cfg.data, "train")
    test_data = load_dataset(cfg.data, "test")
    mode = pixel_mode(cfg.data, cfg.model.likelihood)
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, train_data.shape)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dataset = PerSampleImages(train_data.images[:, 0].numpy(), train_data.levels, mode)
    loader = DataLoader(dataset, batch_size=tc.batch_size, shuffle=True)
    total_steps = len(loader) * tc.epochs
    step, seconds = 0, []
    for _epoch in range(tc.epochs):
        model.train()
        epoch_started = time.perf_counter()
        train_loss = 0.0
        for x in loader:  # (B, 1, H, W)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, tc)
            optimizer.zero_grad()
            loss = elbo(model, x).loss
            loss.backward()
            train_loss += loss.item()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            step += 1
        seconds.append(time.perf_counter() - epoch_started)
        test = evaluate_elbo(model, test_data, mode, seed=tc.seed)  # the example's test() after each epoch
    wall = time.perf_counter() - started
    name = "plain loop" + ("" if clip else ", no clipping") + (", malloc kept" if keep_memory else "")
    return summarize(name, seconds, tc.epochs * len(train_data), wall, test["elbo"], len(test_data))


def in_fresh_process(loop: Callable[..., dict], *args: Any) -> dict:
    """Run one loop in a new interpreter: none inherits another's allocator state or settings
    (`keep_freed_memory` tunes malloc for the whole process)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(loop, *args).result()


def summarize(name: str, seconds: list[float], images: int, wall: float, test_elbo: float,
              test_images: int) -> dict:
    return {
        "loop": name, "epochs": len(seconds), "images": images, "test_images": test_images,
        "images_per_second": images / sum(seconds), "seconds_per_epoch": sum(seconds) / len(seconds),
        "epoch_seconds": seconds, "run_wall_seconds": wall, "test_elbo": test_elbo,
    }


def mean_of(runs: list[dict]) -> dict:
    """One loop's repeated runs as one row: the mean of each figure, and each run's images/s."""
    row = dict(runs[0])
    for key in ("images_per_second", "seconds_per_epoch", "run_wall_seconds", "test_elbo"):
        row[key] = sum(r[key] for r in runs) / len(runs)
    row["epoch_seconds"] = [sum(col) / len(runs) for col in zip(*(r["epoch_seconds"] for r in runs), strict=True)]
    row["runs_images_per_second"] = [r["images_per_second"] for r in runs]
    return row


def to_markdown(summary: dict) -> str:
    rows = summary["results"]
    base = next(r for r in rows if r["loop"] == "plain loop")
    lines = [
        f"{summary['epochs']} epochs on {summary['train_images']:,} Fashion-MNIST training images; torch "
        f"{summary['torch']}, {summary['threads']} threads, {summary['cpus']} CPUs (load average "
        f"{summary['load_average_before']:.2f} before the run); test ELBO over all {summary['test_images']:,} "
        "test images (seed 0).",
        "",
        f"Each loop ran {summary.get('repeats', 1)} times, alternating with the other; figures are the means "
        "(each run's images/s in brackets).",
        "",
        "| loop | images/s (training loop) | s / epoch (training loop) | run wall s | final test ELBO (nats) "
        "| images/s vs plain loop |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        each = ", ".join(f"{x:.0f}" for x in r.get("runs_images_per_second", [r["images_per_second"]]))
        lines.append(
            f"| {r['loop']} | {r['images_per_second']:.0f} ({each}) | {r['seconds_per_epoch']:.2f} | "
            f"{r['run_wall_seconds']:.1f} | {r['test_elbo']:.2f} | "
            f"{r['images_per_second'] / base['images_per_second']:.2f}x |"
        )
    lines += ["", f"Test ELBO, trainer minus plain loop: {summary['test_elbo_difference']:+.2f} nats."]
    return "\n".join(lines) + "\n"


def step_costs_markdown(summary: dict) -> str:
    lines = [
        f"`training.trainer.train`, {summary['epochs']} epoch(s) on {summary['train_images']:,} Fashion-MNIST "
        f"training images ({summary['steps']} steps of {summary['batch_size']}); torch {summary['torch']}, "
        f"{summary['threads']} threads, {summary['cpus']} CPUs (load average {summary['load_average_before']:.2f} "
        f"before, {summary['load_average_after']:.2f} after); {summary['repeats']} rounds, each variant once per "
        "round in a fresh process, the order rotating.",
        "",
        "| variant | images/s, median (each round) | vs trainer, median of the rounds' ratios | test ELBO (nats) |",
        "| --- | --- | --- | --- |",
    ]
    for r in summary["results"]:
        each = ", ".join(f"{x:.0f}" for x in r["rounds_images_per_second"])
        lines.append(f"| {r['loop']} | {r['images_per_second']:.0f} ({each}) | {r['vs_trainer']:.3f}x "
                     f"| {r['test_elbo']:.2f} |")
    paired = summary["paired_clipping"]
    times = paired["median_ms_per_step"]
    lines += ["", f"The clipping alone, in one process ({len(paired['ms_per_step']['trainer'])} pairs of "
              f"{paired['block']} steps after {paired['warmup']}, the order alternating): trainer "
              f"{times['trainer']:.2f} ms/step, clipping in the step {times['clipping in the step']:.2f} ms/step "
              f"(medians); speed of the trainer's step against the old one, median of the pairs: "
              f"{paired['trainer_vs_clipping_in_the_step']:.3f}x."]
    return "\n".join(lines) + "\n"


def compare_step_costs(args: argparse.Namespace) -> dict:
    """STEP_VARIANTS over args.repeats rounds, the order rotating each round (no variant always runs first)."""
    names = list(STEP_VARIANTS)
    runs = []
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = run_config(args.epochs, args.limit, args.threads, run_dir)
        for round_ in range(args.repeats):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                runs.append({**in_fresh_process(trainer_variant, cfg, name), "round": round_})
                print(f"{name} (round {round_ + 1}): {runs[-1]['images_per_second']:.0f} img/s", flush=True)
        paired = in_fresh_process(paired_clipping, cfg, args.pairs)
    speed = {(r["loop"], r["round"]): r["images_per_second"] for r in runs}
    results = []
    for name in names:
        mine = [r for r in runs if r["loop"] == name]
        results.append({
            "loop": name, "images": mine[0]["images"], "test_images": mine[0]["test_images"],
            "images_per_second": statistics.median(r["images_per_second"] for r in mine),
            "rounds_images_per_second": [r["images_per_second"] for r in mine],
            "vs_trainer": statistics.median(speed[name, k] / speed["trainer", k] for k in range(args.repeats)),
            "test_elbo": statistics.median(r["test_elbo"] for r in mine),
        })
    ms = paired["ms_per_step"]
    paired["median_ms_per_step"] = {name: statistics.median(times) for name, times in ms.items()}
    paired["trainer_vs_clipping_in_the_step"] = statistics.median(  # < 1: today's step takes longer
        old / new for new, old in zip(ms["trainer"], ms["clipping in the step"], strict=True))
    return {"results": results, "runs": runs, "steps": runs[0]["images"] // cfg.train.batch_size,
            "batch_size": cfg.train.batch_size, "paired_clipping": paired}


def compare_loops(args: argparse.Namespace) -> dict:
    """The trainer against the plain loop (and with --ablation its variants), alternating over args.repeats."""
    runs = []
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = run_config(args.epochs, args.limit, args.threads, run_dir)
        loops: list[tuple[Callable[..., dict], tuple]] = [(trainer_run, (cfg,)), (plain_run, (cfg,))]
        if args.ablation:
            loops += [(plain_run, (cfg, False)), (plain_run, (cfg, True, True))]
        for repeat in range(args.repeats):
            for loop, loop_args in loops:
                runs.append(in_fresh_process(loop, *loop_args))
                print(f"{runs[-1]['loop']} (run {repeat + 1}): {runs[-1]['images_per_second']:.0f} img/s", flush=True)
    results = [mean_of([r for r in runs if r["loop"] == name]) for name in dict.fromkeys(r["loop"] for r in runs)]
    return {
        "speedup": results[0]["images_per_second"] / results[1]["images_per_second"],  # vs the clipping loop
        "test_elbo_difference": results[0]["test_elbo"] - results[1]["test_elbo"],
        "results": results, "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each loop (the schedule spans them)")
    parser.add_argument("--limit", type=int, default=0, help="first N training images (0 = all 60,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both loops")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the .md and "
                        ".json of the results go")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop, alternating (trainer, plain, "
                        "trainer, ...): the figures are their means, so a slow spell of a shared machine does not "
                        "fall on one loop only (--step-costs: rounds, and medians)")
    parser.add_argument("--ablation", action="store_true",
                        help="also run the plain loop without clipping (as the example has it), and with "
                        "glibc keeping freed memory")
    parser.add_argument("--step-costs", action="store_true",
                        help="instead, the trainer against itself with the step of before issue 15 (medians)")
    parser.add_argument("--pairs", type=int, default=30,
                        help="--step-costs: pairs of 20-step blocks of the clipping alone, in one process")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # another job on the CPU shows here and in the figures
    compared = compare_step_costs(args) if args.step_costs else compare_loops(args)
    results = compared["results"]
    summary = {
        "epochs": args.epochs, "train_images": results[0]["images"] // args.epochs,
        "test_images": results[0]["test_images"],
        "threads": args.threads, "cpus": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0], "torch": torch.__version__,
        "python": platform.python_version(), "config": str(CONFIG.relative_to(ROOT)),
        "repeats": args.repeats, **compared,
    }
    name, markdown = ("training-step-costs", step_costs_markdown) if args.step_costs else ("training", to_markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
