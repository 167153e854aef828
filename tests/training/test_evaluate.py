"""Evaluation of a trained model: importance sampling against the ELBO, bits/dim, pictures, the CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from service.manifest import bits_per_dim, load_manifest
from training.checkpoint import load_checkpoint
from training.data import load_dataset
from training.estimators import log_likelihood
from training.evaluate import evaluate, save_pictures


def test_log_likelihood_lies_above_the_elbo_and_is_reproducible(trained_digits):
    ckpt = load_checkpoint(trained_digits)
    data = load_dataset(ckpt.run_config.data, "test").head(40)
    model = ckpt.build_model()
    a = evaluate(model, data, "dequantize", k=200, seed=3, batch_size=16, chunk=64, progress=False)
    b = evaluate(model, data, "dequantize", k=200, seed=3, batch_size=16, chunk=64, progress=False)
    assert a.log_likelihood == b.log_likelihood and a.num_images == 40
    assert a.log_likelihood > a.elbo  # IWAE bound with K=200 is tighter than the ELBO on average
    assert a.log_likelihood - a.elbo < 0.5 * abs(a.elbo)
    assert 1 <= a.mean_effective_sample_size <= 200
    assert 0 < a.mean_sampling_stderr < 1  # sqrt(1 / ESS - 1 / K) per image, at most 1 nat
    assert a.bits_per_dim == pytest.approx(-(a.log_likelihood - 64 * math.log(17)) / (64 * math.log(2)))
    assert a.elbo_bits_per_dim > a.bits_per_dim


def test_chunking_does_not_change_the_estimate(trained_digits):
    """The importance samples are numpy's standard normals in K-major order, whatever the chunk size."""
    ckpt = load_checkpoint(trained_digits)
    x = torch.rand(3, 1, 8, 8)
    model = ckpt.build_model()
    whole = log_likelihood(model, x, 100, chunk=100, rng=np.random.default_rng(5)).log_likelihood
    pieces = log_likelihood(model, x, 100, chunk=7, rng=np.random.default_rng(5)).log_likelihood
    # the proposal fit's finite differences see the float32 decoder's last-bit rounding, which depends on how many
    # rows one pass has: the estimates agree to that rounding, not to float64's
    torch.testing.assert_close(whole, pieces, rtol=0, atol=1e-4)
    other = log_likelihood(model, x, 100, chunk=100, rng=np.random.default_rng(6)).log_likelihood
    assert not torch.equal(whole, other)


def test_bits_per_dim_convention():
    # A uniform density on [0, 1]^D (log p = 0) is 8 bits per 8-bit pixel; a binary coin is 1 bit.
    assert bits_per_dim(0.0, 784, "dequantize", 256) == pytest.approx(8.0)
    assert bits_per_dim(-784 * math.log(2), 784, "binarize", 2) == pytest.approx(1.0)
    assert bits_per_dim(-10.0, 784, "plain", 256) is None


def test_pictures_are_grids_of_the_right_size(trained_digits, tmp_path):
    ckpt = load_checkpoint(trained_digits)
    data = load_dataset(ckpt.run_config.data, "test")
    paths = save_pictures(ckpt.build_model(), data, "dequantize", tmp_path, n=64)
    assert [p.name for p in paths] == ["reconstructions.png", "samples.png", "samples_noise.png"]
    for path in paths:
        with Image.open(path) as img:
            assert img.size == (2 * (8 * 10 + 2), 2 * (8 * 10 + 2))  # 8x8 tiles of 8 px, 2 px padding, x2
    with Image.open(paths[1]) as a, Image.open(paths[2]) as b:
        assert a.tobytes() != b.tobytes()  # the sigma noise changes the samples


def test_sample_is_deterministic_by_seed(trained_digits):
    model = load_checkpoint(trained_digits).build_model()
    a = model.sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(a, model.sample(5, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, model.sample(5, torch.Generator().manual_seed(2)))


def test_cli_pipeline_trains_evaluates_and_exports(tmp_path):
    """The newcomer's path: one command, then the folder loads in a plain onnxruntime session."""
    cmd = [sys.executable, "-m", "training", "pipeline", "--config", "configs/digits.toml",
           "--epochs", "2", "--out", str(tmp_path / "run"), "--k", "20", "--limit", "30",
           "--name", "cli-digits", "--models-dir", str(tmp_path / "models"), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["k"] == 20 and report["num_images"] == 30
    folder = tmp_path / "models" / "cli-digits"
    manifest = load_manifest(folder)
    assert manifest.metrics.log_likelihood == pytest.approx(report["log_likelihood"])
    assert {"samples.png", "reconstructions.png", "loss_curve.png"} <= set(manifest.files)
    session = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (mean,) = session.run(None, {"z": torch.zeros(3, 8).numpy()})
    assert mean.shape == (3, 1, 8, 8)
    card = subprocess.run([sys.executable, "-m", "service", "--check", "--model-dir", str(tmp_path / "models")],
                          capture_output=True, text=True, timeout=60)
    assert card.returncode == 0 and "model cli-digits" in card.stdout and "sha256 ok" in card.stdout


def test_cli_help_and_errors(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True).stdout
    for command in ("train", "evaluate", "export", "pipeline"):
        assert command in help_text
    train_help = subprocess.run([sys.executable, "-m", "training", "train", "--help"],
                                capture_output=True, text=True).stdout
    assert "--resume" in train_help and "--latent-dim" in train_help and "--set" in train_help
    missing = subprocess.run([sys.executable, "-m", "training", "train", "--data-path", str(tmp_path),
                              "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert missing.returncode == 2 and "apt-get install dataset-fashion-mnist" in missing.stderr
    typo = subprocess.run([sys.executable, "-m", "training", "train", "--set", "model.latent=3"],
                          capture_output=True, text=True)
    assert typo.returncode == 2 and "unknown key" in typo.stderr
