"""Training on real data: the loss falls, a resumed run continues exactly, bad steps are skipped."""

import json
import math

import pytest
import torch

from tests.conftest import digits_config
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.models import VAE
from training.trainer import clipped_step, kl_weight, learning_rate, run_epoch, set_up, train, train_step


def test_short_digits_run_raises_the_elbo(tmp_path):
    ckpt_path = train(digits_config(tmp_path, epochs=6))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"] + 20  # nats per image
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"] + 20
    for r in rows:
        assert math.isclose(r["test_elbo"], r["test_reconstruction"] - r["test_kl"], rel_tol=1e-5)
        assert math.isclose(r["test_elbo_per_dim"], r["test_elbo"] / 64, rel_tol=1e-6)
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt.epoch == 6 and ckpt.step == 6 * 12 and ckpt.data.shape == (1, 8, 8)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    straight = load_checkpoint(train(digits_config(tmp_path / "a", epochs=3)))
    train(digits_config(tmp_path / "b", epochs=3), stop_after=1)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt").epoch == 1
    resumed = load_checkpoint(train(digits_config(tmp_path / "b", epochs=3), resume=True))
    assert resumed.epoch == 3 and resumed.step == straight.step
    for name, tensor in straight.model_state.items():
        assert torch.equal(tensor, resumed.model_state[name]), name
    assert [r["train_elbo"] for r in resumed.history] == [r["train_elbo"] for r in straight.history]


def test_resume_refuses_another_model_config(tmp_path):
    train(digits_config(tmp_path, epochs=2), stop_after=1)
    other = digits_config(tmp_path, epochs=2)
    other.model.latent_dim = 5
    with pytest.raises(ValueError, match="another model"):
        train(other, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(digits_config(tmp_path / "empty", epochs=2), resume=True)


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    a = load_checkpoint(train(digits_config(tmp_path / "a", epochs=1)))
    b = load_checkpoint(train(digits_config(tmp_path / "b", epochs=1)))
    c = load_checkpoint(train(_with_seed(digits_config(tmp_path / "c", epochs=1), 1)))
    key = "encoder.net.0.weight"
    assert torch.equal(a.model_state[key], b.model_state[key])
    assert not torch.equal(a.model_state[key], c.model_state[key])


def _with_seed(cfg, seed):
    cfg.train.seed = seed
    return cfg


def test_non_finite_step_is_skipped_and_leaves_parameters_alone():
    cfg = digits_config("unused")
    model = VAE(cfg.model, (1, 8, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    assert train_step(model, optimizer, x, beta=1.0, grad_clip=10.0) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    result = train_step(model, optimizer, torch.rand(4, 1, 8, 8), beta=1.0, grad_clip=10.0)
    assert result is not None and math.isfinite(result["loss"])
    assert not torch.equal(before["encoder.net.0.weight"], model.state_dict()["encoder.net.0.weight"])


def test_learning_rate_schedule_and_kl_warmup():
    tc = TrainConfig(lr=1e-3, lr_warmup_steps=10, lr_final_fraction=0.1, beta=2.0, kl_warmup_steps=100)
    assert learning_rate(0, 110, tc) == pytest.approx(1e-4)
    assert learning_rate(9, 110, tc) == pytest.approx(1e-3)
    assert learning_rate(60, 110, tc) == pytest.approx(0.55e-3)  # cosine midpoint
    assert learning_rate(110, 110, tc) == pytest.approx(1e-4)
    assert kl_weight(0, tc) == 0.0 and kl_weight(50, tc) == pytest.approx(1.0) and kl_weight(500, tc) == 2.0
    assert kl_weight(0, TrainConfig(beta=4.0)) == 4.0


def test_conv_bernoulli_run_with_csv_metrics_exports_with_parity(tmp_path):
    """The other architecture and likelihood: a conv encoder/decoder, Bernoulli on binarized digits."""
    import csv

    from service.manifest import bits_per_dim
    from training.export import export_model

    cfg = digits_config(tmp_path / "run", epochs=3, metrics_format="csv")
    cfg.model.arch, cfg.model.conv_channels, cfg.model.likelihood = "conv", (8, 16), "bernoulli"
    ckpt = load_checkpoint(train(cfg))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 3 and float(rows[-1]["test_elbo"]) > float(rows[0]["test_elbo"])
    assert ckpt.data.pixel_mode == "binarize" and float(rows[-1]["test_elbo"]) > -64 * math.log(2)  # beats coins
    folder = export_model(ckpt, tmp_path / "models", "conv-bernoulli")  # parity checked inside
    from service.manifest import load_manifest

    manifest = load_manifest(folder)
    assert manifest.likelihood.type == "bernoulli" and manifest.likelihood.sigma is None
    assert manifest.image.pixel_mode == "binarize"
    assert bits_per_dim(-64 * math.log(2), 64, "binarize", 17) == pytest.approx(1.0)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale", [0.01, 30.0])  # gradients under and over the limit
def test_clipped_step_is_clipping_by_hand_then_step(fused, scale):
    """The trainer's clipping against the definition done by hand: every gradient scaled by
    min(1, max_norm / (norm + 1e-6)), the norm over all gradients as one vector; then Adam's step, over three
    steps from the same start."""
    torch.manual_seed(0)
    start = [torch.randn(50, 40), torch.randn(40)]
    grads = [torch.randn(50, 40) * scale, torch.randn(40) * scale]
    max_norm = 10.0

    def run(ours: bool) -> list[torch.Tensor]:
        params = [p.clone().requires_grad_(True) for p in start]
        optimizer = torch.optim.Adam(params, lr=1e-2, fused=fused)
        for step in range(3):
            step_grads = [g * (1 + step) for g in grads]
            if ours:
                for p, g in zip(params, step_grads, strict=True):
                    p.grad = g
                assert clipped_step(optimizer, max_norm)
            else:
                norm = torch.cat([g.flatten() for g in step_grads]).norm()
                coef = min(1.0, max_norm / (float(norm) + 1e-6))
                for p, g in zip(params, step_grads, strict=True):
                    p.grad = g * coef
                optimizer.step()
        return [p.detach() for p in params]

    for ours, reference in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    moved = [p - s for p, s in zip(run(True), start, strict=True)]
    assert all(m.abs().max() > 1e-3 for m in moved)  # the steps did move the parameters


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_gradient_skips_the_step(bad):
    """A finite loss whose gradient is not: no step (parameters and Adam's state untouched), no gradient left."""
    cfg = digits_config("unused")
    model = VAE(cfg.model, (1, 8, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(model.parameters())
    hook = first.register_hook(lambda g: g * bad)
    assert train_step(model, optimizer, torch.rand(4, 1, 8, 8), beta=1.0, grad_clip=10.0) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not optimizer.state  # Adam took no step: no moments, no step count
    assert all(p.grad is None for p in model.parameters())
    hook.remove()
    assert train_step(model, optimizer, torch.rand(4, 1, 8, 8), beta=1.0, grad_clip=10.0) is not None
    assert not torch.equal(before["encoder.net.0.weight"], model.state_dict()["encoder.net.0.weight"])


def test_an_epoch_is_one_step_per_batch(tmp_path):
    """set_up, then run_epoch: every batch a step, every image counted once, the schedule spanning all epochs."""
    run = set_up(digits_config(tmp_path, epochs=3))
    sums = run_epoch(run, 0)
    assert run.state.step == run.steps_per_epoch == 12 and run.total_steps == 36
    assert sums.images == len(run.train_data) == 600 and run.state.skipped_steps == 0
    assert sums.seconds > 0 and all(math.isfinite(v) for v in sums.totals.values())
