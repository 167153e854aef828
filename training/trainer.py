"""The training loop: Adam on minus the ELBO, with a warm-up + cosine learning-rate schedule, gradient
clipping, a guard that skips non-finite steps, a checkpoint each epoch and exact resume.

Run it through the CLI: `python -m training train --config configs/fashion-mnist.toml`.
`train` is set-up, epochs and logging: `set_up` (data, model, optimizer, and the checkpoint's state on
--resume), then per epoch `run_epoch` (the optimizer steps), `epoch_row` (the test ELBO and the metrics row) and
`end_epoch` (history, checkpoint, metrics file, loss curve).
Data stay in memory as uint8 tensors; batches are index slices, so an epoch costs only the model
(benchmarks/training.py compares this loop with the usual per-sample DataLoader loop).
One seeded generator drives data order and dequantization noise, the global torch RNG the
reparameterization noise; both states go into the checkpoint, so a resumed run continues exactly.
Under torchrun every rank runs `train` on its rows of each global batch, through DistributedDataParallel, and rank 0
alone evaluates and writes (training/distributed.py: how the split keeps it the same run as one process's).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training import distributed
from training.checkpoint import Checkpoint, DataInfo, load_checkpoint, save_checkpoint
from training.config import RunConfig, TrainConfig
from training.data import ImageData, load_dataset, pixel_mode, to_unit
from training.elbo import ElboParts, elbo
from training.evaluate import evaluate_elbo
from training.latent import LatentModel
from training.metrics_log import write_metrics
from training.models import build_model
from training.plots import plot_loss_curve
from training.tcvae import TCVAEParts, tcvae_objective


def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * cfg.lr_final_fraction."""
    if step < cfg.lr_warmup_steps:
        return cfg.lr * (step + 1) / cfg.lr_warmup_steps
    span = max(1, total_steps - cfg.lr_warmup_steps)
    progress = min(1.0, (step - cfg.lr_warmup_steps) / span)
    floor = cfg.lr * cfg.lr_final_fraction
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


def kl_weight(step: int, cfg: TrainConfig) -> float:
    """beta, reached linearly over cfg.kl_warmup_steps (KL warm-up / annealing; 0 steps = off)."""
    if cfg.kl_warmup_steps <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, step / cfg.kl_warmup_steps)


def objective(model: LatentModel, x: torch.Tensor, beta: float, tc: TrainConfig | None = None,
              dataset_size: int = 1) -> ElboParts | TCVAEParts:
    """The training objective of batch x: the (beta-weighted) ELBO, or beta-TCVAE's when tc.objective is
    "tcvae" (its own weights; KL warm-up applies to the ELBO objective only)."""
    if tc is None or tc.objective == "elbo":
        return elbo(model, x, beta=beta)
    if len(model.latent_dims) != 1:
        raise ValueError("objective = 'tcvae' needs one latent level (hierarchy = 'flat')")
    (q,) = model.encode(x)
    z = q.rsample()  # (B, D)
    log_px = model.decode(z).log_prob(x)
    return tcvae_objective(log_px, z, q.mu, q.logvar, dataset_size, tc.tc_alpha, tc.tc_beta, tc.tc_gamma)


def train_step(model: LatentModel, optimizer: torch.optim.Optimizer, x: torch.Tensor, beta: float,
               grad_clip: float, tc: TrainConfig | None = None, dataset_size: int = 1,
               ddp: torch.nn.Module | None = None) -> dict[str, float] | None:
    """One Adam step on minus the training objective (see `objective`) of batch x (B, C, H, W).

    ddp: under torchrun, model's objective in DistributedDataParallel (`distributed.wrap`): x is the global batch,
    this rank's rows of it go through ddp, and DDP averages the ranks' gradients.

    Returns the means (loss, elbo, reconstruction, kl) over this process's images, or None when the loss (on any
    rank) or the gradient norm is not finite: then the parameters are left as they were (the step is skipped).
    """
    parts, share = (objective(model, x, beta, tc, dataset_size), 1.0) if ddp is None else ddp(x, beta, tc, dataset_size)
    loss = parts.loss if share == 1.0 else parts.loss * share  # unequal parts: distributed.Rows.share
    optimizer.zero_grad(set_to_none=True)
    if not distributed.all_true(torch.isfinite(loss)):
        return None
    loss.backward()
    if not clipped_step(optimizer, grad_clip):
        optimizer.zero_grad(set_to_none=True)  # clip_grad_norm_ scaled them by the bad norm's coefficient
        return None
    means = {key: float(getattr(parts, key).detach().mean()) for key in ("elbo", "reconstruction", "kl")}
    return {"loss": parts.loss.item(), **means}


def clipped_step(optimizer: torch.optim.Optimizer, max_norm: float) -> bool:
    """The optimizer's step on its gradients clipped to a total norm of at most max_norm; False, and no step,
    when that norm is not finite (one bad batch would otherwise turn every parameter into NaN).

    foreach=True: the norms and the scaling each in one call over all gradients, not a call per parameter
    (what the clipping costs a step: docs/performance.md, "Training").
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)  # over every gradient, as one vector
    if not torch.isfinite(norm):
        return False
    optimizer.step()
    return True


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """What one invocation of `train` works on, from `set_up`: the config, data, model and optimizer."""

    cfg: RunConfig
    out: Path  # the run folder: checkpoint, metrics, loss curve
    train_data: ImageData
    test_data: ImageData
    info: DataInfo
    model: LatentModel
    optimizer: torch.optim.Optimizer
    data_gen: torch.Generator  # data order and dequantization noise (the global RNG: reparameterization)
    state: TrainState = field(default_factory=TrainState)
    ddp: torch.nn.Module | None = None  # under torchrun, the model's objective in DDP (distributed.wrap)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_data) / self.cfg.train.batch_size)

    @property
    def total_steps(self) -> int:
        """The span of the learning-rate schedule: every epoch of the config, whatever stop_after says."""
        return self.steps_per_epoch * self.cfg.train.epochs


@dataclass
class EpochSums:
    """One epoch's training figures: per-image sums over the steps taken (skipped steps add nothing)."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("loss", "elbo", "reconstruction", "kl"),
                                                                           0.0))
    images: int = 0
    seconds: float = 0.0  # the loop's wall time: batches and steps, not the evaluation after it

    def add(self, means: dict[str, float], batch_size: int) -> None:
        self.images += batch_size
        for key, value in means.items():
            self.totals[key] += value * batch_size

    def over_ranks(self) -> EpochSums:
        """The sums of every rank (the seconds this one's); the same sums in one process."""
        *totals, images = distributed.sum_over_ranks([*self.totals.values(), self.images])
        return EpochSums(dict(zip(self.totals, totals, strict=True)), int(images), self.seconds)


def train(cfg: RunConfig, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train (or resume) the run described by cfg; returns the checkpoint path.

    stop_after: end this invocation after that many epochs in all (the schedule still spans
    cfg.train.epochs), e.g. to split a long run across sessions with --resume.
    Under torchrun every rank calls it, in a process group for the run (training/distributed.py).
    """
    with distributed.session():
        run = set_up(cfg, resume)
        fit(run, stop_after)
    return run.checkpoint_path


def fit(run: Run, stop_after: int | None = None) -> None:
    """The run's epochs from its state on, to stop_after epochs in all (None: every epoch of the config); rank 0
    alone evaluates and records each."""
    tc = run.cfg.train
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    for epoch in range(run.state.epoch, last_epoch):
        sums = run_epoch(run, epoch)
        if distributed.is_main():
            end_epoch(run, epoch_row(run, epoch, sums))


def set_up(cfg: RunConfig, resume: bool = False) -> Run:
    """The run folder, both data splits, the model and its optimizer: initialised from cfg.train.seed, or, with
    resume, as the run folder's checkpoint left them (RNG states included). Under torchrun, on every rank: the
    same model, the CPU threads of train.threads shared out, and the model's objective in DDP."""
    tc = cfg.train
    out = Path(tc.out_dir)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
    threads = distributed.threads_per_process(tc.threads)
    if threads:
        torch.set_num_threads(threads)
    train_data = load_dataset(cfg.data, "train")
    distributed.check_batch(tc.batch_size, len(train_data))
    test_data = load_dataset(cfg.data, "test")
    info = DataInfo.from_data(train_data, test_data, pixel_mode(cfg.data, cfg.model.likelihood))

    # The seeds come first: the model's initial weights are the global RNG's first draws.
    torch.manual_seed(tc.seed)
    data_gen = torch.Generator().manual_seed(tc.seed + 1)
    model = build_model(cfg.model, info.shape, info.levels).to(distributed.device())
    # fused: one pass over each parameter per step instead of a kernel per Adam operation (on CPU the default
    # implementation is a loop of them), the same update.
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    run = Run(cfg, out, train_data, test_data, info, model, optimizer, data_gen)
    if resume:
        restore(run)
    run.ddp = distributed.wrap(model, objective)
    return run


def restore(run: Run) -> None:
    """Load the run folder's checkpoint into run: weights, Adam's moments, both RNG states and the history."""
    path = run.checkpoint_path
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    ckpt = load_checkpoint(path)
    config = run.cfg.to_dict()
    if ckpt.config["model"] != config["model"] or ckpt.config["data"] != config["data"]:
        raise ValueError(f"--resume: {path} was trained with another model or data config")
    run.model.load_state_dict(ckpt.model_state)
    run.optimizer.load_state_dict(ckpt.optimizer_state)
    torch.set_rng_state(ckpt.torch_rng)
    run.data_gen.set_state(ckpt.data_rng)
    run.state = TrainState(ckpt.epoch, ckpt.step, ckpt.skipped_steps, ckpt.history)


def run_epoch(run: Run, epoch: int) -> EpochSums:
    """One pass over the training split in a fresh order: a scheduled step per batch (run.state counts them).
    Returns the epoch's sums over every rank."""
    tc, state, data = run.cfg.train, run.state, run.train_data
    started = time.perf_counter()
    sums = EpochSums()
    order = torch.randperm(len(data), generator=run.data_gen)
    bar = tqdm(range(run.steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}",
               disable=not (tc.progress and distributed.is_main()), leave=False)
    for i in bar:
        idx = order[i * tc.batch_size : (i + 1) * tc.batch_size]
        # (B, C, H, W): the whole global batch on every rank, so that its noise is the one process's
        x = to_unit(data.images[idx], data.levels, run.info.pixel_mode, run.data_gen)
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(state.step, run.total_steps, tc)
        means = train_step(run.model, run.optimizer, x, kl_weight(state.step, tc), tc.grad_clip, tc, len(data),
                           run.ddp)
        state.step += 1
        if means is None:
            state.skipped_steps += 1
            continue
        sums.add(means, distributed.rows(len(x)).size)  # this process's images of the batch
        bar.set_postfix(loss=f"{means['loss']:.2f}", refresh=False)  # drawn at tqdm's own pace, not every step
    sums.seconds = time.perf_counter() - started
    return sums.over_ranks()


def epoch_row(run: Run, epoch: int, sums: EpochSums) -> dict[str, Any]:
    """The metrics row of an epoch: its training means, the test ELBO (fixed noise, so epochs compare like for
    like), the last step's learning rate, sigma, skipped steps and speed."""
    tc, state = run.cfg.train, run.state
    test = evaluate_elbo(distributed.on_cpu(run.model), run.test_data, run.info.pixel_mode, seed=tc.seed)
    row: dict[str, Any] = {"epoch": epoch + 1, "step": state.step,
                           "lr": learning_rate(state.step - 1, run.total_steps, tc)}
    for key, total in sums.totals.items():
        row[f"train_{key}"] = total / max(sums.images, 1)
    row["train_elbo_per_dim"] = row["train_elbo"] / math.prod(run.info.shape)
    row.update({f"test_{key}": value for key, value in test.items()})
    row.update({"sigma": run.model.likelihood.sigma, "skipped_steps": state.skipped_steps,
                "epoch_seconds": sums.seconds, "images_per_second": sums.images / sums.seconds})
    return row


def end_epoch(run: Run, row: dict[str, Any]) -> None:
    """Record a finished epoch: its row in the history, a progress line, the checkpoint, metrics and plot."""
    state, out = run.state, run.out
    state.history.append(row)
    state.epoch = row["epoch"]
    if run.cfg.train.progress:
        tqdm.write(f"epoch {row['epoch']}: train ELBO {row['train_elbo']:.2f}, test ELBO "
                   f"{row['test_elbo']:.2f} nats ({row['epoch_seconds']:.1f} s, {row['images_per_second']:.0f} img/s)")
    save_checkpoint(run.checkpoint_path, Checkpoint(
        config=run.cfg.to_dict(), data=run.info, model_state=run.model.state_dict(),
        optimizer_state=run.optimizer.state_dict(), epoch=state.epoch, step=state.step,
        skipped_steps=state.skipped_steps, history=state.history,
        torch_rng=torch.get_rng_state(), data_rng=run.data_gen.get_state(),
    ))
    write_metrics(out, state.history, run.cfg.train.metrics_format)
    plot_loss_curve(state.history, out / "loss_curve.png")
