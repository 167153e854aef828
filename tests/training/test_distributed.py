"""Distributed training (torchrun, two CPU processes, gloo) against one process on the same global batch.

The comparison is like for like by construction, with no test hook: under torchrun every rank draws the data
order, the dequantization noise and the reparameterization noise of the whole global batch, from generators in
the states one process's would be in, and keeps its own rows (training/distributed.py). The two runs then differ
only in the order of float sums (DDP averages the ranks' means where one process takes one mean), so the loss
curve and the weights must match one process's within float tolerance and the RNG states exactly. The training
set (405 digits, batches of 40) ends with a batch of 5 split 3 + 2, which checks the weighting of unequal parts.

One torchrun launch (`python -m torch.distributed.run`, which is torchrun) runs this file as its script
(`worker`): run "a" for 3 epochs, run "b" stopped after 1 and then resumed through the command line's --resume
(`training.cli.main`, what `-m training` runs), each rank saving its weights and the paths it wrote (an audit
hook, `sys.addaudithook`, sees every Python open, rename and mkdir). One launch, as the processes' start-up
(torch imported by three processes) is most of the test's time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training import cli, distributed
from training.checkpoint import load_checkpoint
from training.config import RunConfig
from training.distributions import DiagonalGaussian
from training.trainer import fit, objective, set_up, train

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
[data]
dataset = "digits"
limit_train = 405
limit_test = 200

[model]
arch = "mlp"
latent_dim = 4
hidden = [64]
sigma = 0.2

[train]
epochs = 3
batch_size = 40
lr = 3e-3
lr_warmup_steps = 10
seed = 0
progress = false
"""
CURVE = ("train_loss", "train_elbo", "train_reconstruction", "train_kl", "test_elbo", "sigma", "step", "lr")


def run_config(config: Path, out: Path) -> RunConfig:
    return RunConfig.load(config, [f"train.out_dir={json.dumps(str(out))}"])


def torchrun(*args: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def written_path(event: str, args: tuple) -> str | None:
    """The path an audit event writes to, if it writes one."""
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    elif event in ("os.rename", "os.mkdir"):
        path, writes = args[1] if event == "os.rename" else args[0], True
    else:
        return None
    return os.fsdecode(path) if writes and isinstance(path, str | bytes | os.PathLike) else None


def worker(config: Path, root: Path) -> None:
    """Under torchrun: runs a (every epoch) and b (stopped after 1, then resumed by the CLI) in root/runs; each rank
    writes its weights (root/{a,b}-rank{r}.pt) and the paths under root/runs it wrote to (root/writes-rank{r}.json)."""
    runs, written = str(root / "runs"), set()

    def audit(event: str, args: tuple) -> None:
        path = written_path(event, args)
        if path is not None and path.startswith(runs):
            written.add(os.path.relpath(path, runs))

    sys.addaudithook(audit)
    with distributed.session():
        rank = distributed.rank()
        for name, stop_after in (("a", None), ("b", 1)):
            run = set_up(run_config(config, root / "runs" / name))
            fit(run, stop_after)
            torch.save(run.model.state_dict(), root / f"{name}-rank{rank}.pt")
        assert cli.main(["train", "--config", str(config), "--out", str(root / "runs" / "b"), "--resume"]) == 0
        (root / f"writes-rank{rank}.json").write_text(json.dumps(sorted(written)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """root/runs/a and b from two ranks (b resumed), and root/one, run a in one process."""
    root = tmp_path_factory.mktemp("distributed")
    config = root / "digits.toml"
    config.write_text(CONFIG)
    train(run_config(config, root / "one"))
    torchrun(__file__, str(config), str(root))
    return root


def test_both_ranks_end_with_the_same_weights_rank_0_saved(runs):
    ranks = [torch.load(runs / f"a-rank{r}.pt") for r in (0, 1)]
    saved = load_checkpoint(runs / "runs" / "a" / "checkpoint.pt").model_state
    for name, tensor in saved.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # bitwise
        assert torch.equal(tensor, ranks[0][name]), name


def test_two_ranks_train_as_one_process_on_the_global_batch(runs):
    one = load_checkpoint(runs / "one" / "checkpoint.pt")
    two = load_checkpoint(runs / "runs" / "a" / "checkpoint.pt")
    assert two.epoch == one.epoch == 3 and two.step == one.step == 3 * 11 and two.skipped_steps == 0
    for a, b in zip(one.history, two.history, strict=True):  # the loss curve
        for key in CURVE:
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), (a["epoch"], key)
    for name, tensor in one.model_state.items():
        torch.testing.assert_close(two.model_state[name], tensor, rtol=1e-5, atol=1e-6)
    # every random draw was one process's: the generators end in the same states
    assert torch.equal(two.torch_rng, one.torch_rng) and torch.equal(two.data_rng, one.data_rng)
    assert two.config == {**one.config, "train": {**one.config["train"], "out_dir": two.config["train"]["out_dir"]}}


def test_only_rank_0_writes(runs):
    rank0, rank1 = (json.loads((runs / f"writes-rank{r}.json").read_text()) for r in (0, 1))
    assert rank1 == []
    for name in ("a", "b"):
        assert {f"{name}/checkpoint.pt", f"{name}/metrics.jsonl", f"{name}/loss_curve.png"} <= set(rank0)
    assert sorted(p.name for p in (runs / "runs" / "a").iterdir()) == ["checkpoint.pt", "loss_curve.png",
                                                                       "metrics.jsonl"]


def test_resume_with_two_ranks_ends_where_the_uninterrupted_run_ends(runs):
    straight = load_checkpoint(runs / "runs" / "a" / "checkpoint.pt")
    resumed = load_checkpoint(runs / "runs" / "b" / "checkpoint.pt")
    assert resumed.epoch == 3 and resumed.step == straight.step
    for name, tensor in straight.model_state.items():
        assert torch.equal(tensor, resumed.model_state[name]), name
    assert torch.equal(straight.torch_rng, resumed.torch_rng) and torch.equal(straight.data_rng, resumed.data_rng)
    assert [[r[k] for k in CURVE] for r in resumed.history] == [[r[k] for k in CURVE] for r in straight.history]
    assert len((runs / "runs" / "b" / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("total", [40, 5, 7, 1])
def test_rows_split_a_batch_into_contiguous_parts(total):
    world = 2 if total > 1 else 1
    parts = [distributed.rows(total, r, world) for r in range(world)]
    assert parts[0].start == 0 and parts[-1].stop == total
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1
    # each rank's mean weighted by its share, averaged over ranks (DDP), is the batch's mean
    values = torch.randn(total, dtype=torch.float64)
    averaged = sum(values[p.start : p.stop].mean() * p.share for p in parts) / world
    assert float(averaged) == pytest.approx(float(values.mean()), rel=1e-12)


def test_rows_gaussian_draws_the_rows_of_the_whole_batch_draw():
    """Each rank's draw is its rows of the draw one process makes for the whole batch, from the same state on."""
    mu, logvar = torch.randn(7, 3), torch.randn(7, 3)
    whole = DiagonalGaussian(mu, logvar).rsample(torch.Generator().manual_seed(5))
    parts = []
    for r in range(2):
        rows = distributed.rows(7, r, 2)
        q = distributed.RowsGaussian(mu[rows.start : rows.stop], logvar[rows.start : rows.stop], rows.start, 7)
        parts.append(q.rsample(torch.Generator().manual_seed(5)))
    assert torch.equal(torch.cat(parts), whole)


def test_a_global_batch_the_ranks_cannot_split_is_refused():
    with pytest.raises(ValueError, match="divisible by 2"):
        distributed.check_batch(45, 400, world=2)
    with pytest.raises(ValueError, match="last batch of an epoch has 1 image"):
        distributed.check_batch(40, 401, world=2)
    distributed.check_batch(40, 402, world=2)
    distributed.check_batch(45, 401, world=1)  # one process: any batch
    assert [distributed.threads_per_process(t, w) for t, w in ((2, 2), (1, 2), (8, 2), (0, 2), (2, 1))] == [
        1, 1, 4, 0, 2]


def test_one_process_makes_no_process_group(tmp_path):
    """Without torchrun: no group, no DDP, all rows of every batch, the threads of the config."""
    assert not distributed.launched()
    run = set_up(run_config(write_config(tmp_path), tmp_path / "run"))
    assert run.ddp is None and not distributed.active() and distributed.is_main()
    assert distributed.wrap(run.model, objective) is None and distributed.rows(40).size == 40
    with distributed.session():
        assert not distributed.active()


def write_config(folder: Path) -> Path:
    path = folder / "digits.toml"
    path.write_text(CONFIG)
    return path


if __name__ == "__main__":  # the torchrun worker of `runs`
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
