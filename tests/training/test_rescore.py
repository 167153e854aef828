"""`python -m training rescore`: an exported folder's model rebuilt from its ONNX graphs is the trained one, and
its manifest's metrics are rewritten with what the evaluator gives."""

from __future__ import annotations

import json

import pytest

from service.manifest import load_manifest
from tests.conftest import NEW_LIKELIHOODS
from training.checkpoint import load_checkpoint
from training.cli import main
from training.data import load_dataset
from training.evaluate import evaluate
from training.export import export_model
from training.rescore import rebuild


@pytest.mark.parametrize("fixture", ["trained_digits", "two_level_digits"])
def test_rescored_metrics_are_the_checkpoints_evaluation(request, tmp_path, fixture):
    ckpt = load_checkpoint(request.getfixturevalue(fixture))
    folder = export_model(ckpt, tmp_path, "m")
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert main(["rescore", str(folder), "--k", "300", "--limit", "40", "--eval-seed", "3", "--no-progress"]) == 0
    data = load_dataset(ckpt.run_config.data, "test").head(40)
    expected = evaluate(ckpt.build_model(), data, ckpt.data.pixel_mode, 300, seed=3, progress=False)
    manifest = load_manifest(folder)  # loads: the graphs' hashes still hold
    metrics = manifest.metrics
    assert metrics is not None and metrics.num_images == 40 and metrics.log_likelihood_k == 300 and metrics.seed == 3
    assert metrics.elbo == pytest.approx(expected.elbo, abs=1e-4)
    assert metrics.log_likelihood == pytest.approx(expected.log_likelihood, abs=1e-3)
    assert metrics.bits_per_dim == pytest.approx(expected.bits_per_dim, abs=1e-5)
    assert metrics.mean_effective_sample_size == pytest.approx(expected.mean_effective_sample_size, rel=1e-3)
    assert json.loads((folder / "manifest.json").read_text())["files"] == files


def test_rebuilt_model_has_every_likelihoods_parameters(likelihood_models):
    """The parity check inside `rebuild` passes for every likelihood's folder (a wrong or missing weight fails
    it, or load_state_dict's strict check first)."""
    checkpoints, root = likelihood_models
    for name in NEW_LIKELIHOODS:
        model = rebuild(root / name, load_manifest(root / name))
        trained = load_checkpoint(checkpoints[name]).build_model().state_dict()
        for key, value in model.state_dict().items():
            assert value.equal(trained[key]), key
