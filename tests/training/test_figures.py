"""The chapter's figures (training/figures.py): each PNG is written, and the numbers behind it are right.

The importance-sampling panel runs with few K values and repeats so the module takes a few seconds;
the generation figure runs on a tiny digits model exported by the project's own exporter, so the test
does not depend on the shipped models/ folder.
"""

import math

import numpy as np
import pytest
import torch

from training import figures
from training.checkpoint import load_checkpoint
from training.export import export_model


def _assert_png(path, min_bytes=10_000):
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert min_bytes < len(data) < 2_000_000


def test_mixture_marginal_is_a_density_and_the_sum_of_the_joint(tmp_path):
    out = figures.figure_mixture(tmp_path / "mixture.png", n_samples=2000)
    _assert_png(tmp_path / "mixture.png")
    assert out.joint.shape == (3, len(out.x))
    np.testing.assert_allclose(out.marginal, out.joint.sum(0), rtol=0, atol=1e-15)
    assert np.trapezoid(out.marginal, out.x) == pytest.approx(1.0, abs=1e-3)
    # Each component integrates to its weight lambda_k: Pr(z = k).
    np.testing.assert_allclose(np.trapezoid(out.joint, out.x, axis=1), [0.25, 0.45, 0.30], atol=1e-3)
    # The continuous model: the numerically integrated marginal is a density too, and its mean matches
    # that of the ancestral samples (E[x] = E[f(z)] = 0 for the odd f, up to Monte Carlo error).
    assert np.trapezoid(out.marginal_continuous, out.x) == pytest.approx(1.0, abs=1e-3)
    assert np.trapezoid(out.joint_continuous, out.z, axis=0) == pytest.approx(out.marginal_continuous)
    mean = np.trapezoid(out.x * out.marginal_continuous, out.x)
    assert abs(mean - out.samples_continuous.mean()) < 4 * out.samples_continuous.std() / math.sqrt(2000)


def test_mixture_rejects_weights_that_do_not_sum_to_one(tmp_path):
    with pytest.raises(ValueError, match="sum to 1"):
        figures.figure_mixture(tmp_path / "bad.png", weights=(0.5, 0.6, 0.1))


@pytest.fixture(scope="module")
def elbo_gap(tmp_path_factory):
    path = tmp_path_factory.mktemp("figures") / "elbo_gap.png"
    return path, figures.figure_elbo_gap(path, ks=(1, 10, 100, 1000), repeats=40)


def test_elbo_gap_png_is_written(elbo_gap):
    _assert_png(elbo_gap[0])


def test_elbo_touches_log_likelihood_exactly_at_the_posterior(elbo_gap):
    out = elbo_gap[1]
    model = figures.linear_gaussian()
    assert out.log_px == pytest.approx(model.log_px(out.x), abs=1e-12)
    # (a) the mean shift: maximal at t = 0, where q is the posterior and the bound is tight.
    i = int(np.argmax(out.elbo_shift))
    assert out.shift[i] == pytest.approx(0.0, abs=1e-12)
    assert out.elbo_shift[i] == pytest.approx(out.log_px, abs=1e-6)
    # (b) the log-variance: maximal at the posterior's log-variance.
    j = int(np.argmax(out.elbo_logvar))
    assert out.logvar[j] == pytest.approx(math.log(out.posterior_var[0]), abs=1e-9)
    assert out.elbo_logvar[j] == pytest.approx(out.log_px, abs=1e-6)
    # Away from the posterior the bound is strictly below log Pr(x).
    assert out.elbo_shift[0] < out.log_px - 1.0 and out.elbo_logvar[0] < out.log_px - 0.5


def test_gap_is_the_kl_to_the_posterior_everywhere(elbo_gap):
    """Prince eq. 17.17 on every grid point: log Pr(x) - ELBO = KL[q || Pr(z|x)], the two sides computed
    independently (expected log-likelihood minus KL to the prior, against the Gaussian-to-Gaussian KL)."""
    out = elbo_gap[1]
    np.testing.assert_allclose(out.log_px - out.elbo_shift, out.kl_shift, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.log_px - out.elbo_logvar, out.kl_logvar, rtol=0, atol=1e-6)
    assert np.all(out.kl_shift >= -1e-12) and np.all(out.kl_logvar >= -1e-12)
    # Along the mean the KL is the quadratic t^2 / (2 S_11).
    np.testing.assert_allclose(out.kl_shift, out.shift**2 / (2 * out.posterior_var[0]), atol=1e-9)


def test_importance_sampling_approaches_the_exact_value_from_below(elbo_gap):
    out = elbo_gap[1]
    assert out.is_estimates.shape == (40, 4)
    assert abs(out.is_mean[-1] - out.log_px) < 0.05
    assert out.is_mean[0] < out.is_mean[-1]
    assert out.is_mean[0] < out.log_px - 1.0  # the worse proposal really is worse
    # K = 1 is the one-sample ELBO: its mean matches the proposal's closed-form ELBO within Monte Carlo error.
    se = out.is_estimates[:, 0].std() / math.sqrt(40)
    assert abs(out.is_mean[0] - out.proposal_elbo) < 5 * se


def test_linear_gaussian_is_the_one_of_the_estimator_tests():
    """Same W, b and sigma as tests/training/test_linear_gaussian.py, and with no shift the VAE's encoder is
    the exact posterior: every importance weight is Pr(x), so even K = 1 gives log Pr(x)."""
    from tests.training.test_linear_gaussian import SIGMA, _linear_gaussian

    _, w, b = _linear_gaussian()
    model = figures.linear_gaussian()
    np.testing.assert_array_equal(model.w, w)
    np.testing.assert_array_equal(model.b, b)
    assert model.sigma == SIGMA
    x = np.random.default_rng(7).normal(size=4)
    est = figures.importance_sampled_estimates(model, x, ks=(1, 5), repeats=3, mean_shift=(0.0, 0.0),
                                               logvar_shift=0.0)
    np.testing.assert_allclose(est, model.log_px(x), atol=1e-9)


def test_default_ks_run_from_one_to_k_max():
    ks = figures.default_ks(5000)
    assert ks[0] == 1 and ks[-1] == 5000 and np.all(np.diff(ks) > 0)
    assert list(figures.default_ks(10)) == [1, 2, 5, 10]


def test_generation_samples_z_then_x_from_an_exported_model(trained_digits, tmp_path):
    ckpt = load_checkpoint(trained_digits)
    folder = export_model(ckpt, tmp_path / "models", "digits-tiny")
    out = figures.figure_generation(tmp_path / "generation.png", folder, n=16, seed=3)
    _assert_png(tmp_path / "generation.png", min_bytes=5_000)
    assert out.z.shape == (16, ckpt.build_model().latent_dim)
    assert out.means.shape == out.samples.shape == (16, 1, 8, 8)
    # The ONNX means are the PyTorch decoder's f[z] for the same z.
    with torch.no_grad():
        expected = ckpt.build_model().eval().decode(torch.from_numpy(out.z)).mean().numpy()
    np.testing.assert_allclose(out.means, expected, atol=1e-4)
    # x = f[z] + sigma * eps: the residuals have the manifest's sigma as their scale.
    assert out.sigma is not None
    resid = (out.samples - out.means).ravel()
    assert np.std(resid) == pytest.approx(out.sigma, rel=0.15)
    # Seeded: the same seed gives the same draws.
    again = figures.figure_generation(tmp_path / "again.png", folder, n=16, seed=3)
    np.testing.assert_array_equal(again.z, out.z)
    np.testing.assert_array_equal(again.samples, out.samples)


def test_tile_is_the_service_grid_clipped_in_imshow_layout():
    from service.images import grid

    images = np.random.default_rng(0).uniform(-0.5, 1.5, (5, 3, 4, 3))
    expected = grid(np.clip(images, 0.0, 1.0), 2)  # (C, H', W')
    np.testing.assert_array_equal(figures.tile(images, 2), expected.transpose(1, 2, 0))
    np.testing.assert_array_equal(figures.tile(images[:, :1], 2), expected[0])
    assert expected.shape == (3, 3 * (4 + 2) + 2, 2 * (3 + 2) + 2)


def test_generation_without_a_model_folder_is_skipped_with_a_message(tmp_path, capsys):
    assert figures.figure_generation(tmp_path / "generation.png", tmp_path / "no-such-model") is None
    assert not (tmp_path / "generation.png").exists()
    assert "skipping generation.png" in capsys.readouterr().err


def test_main_writes_every_figure(tmp_path, capsys):
    """The command end to end, small: without a model folder it writes the other two and says so."""
    out = tmp_path / "figs"
    assert figures.main(["--out", str(out), "--model", str(tmp_path / "missing"), "--k-max", "20",
                         "--repeats", "10"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["elbo_gap.png", "mixture_of_gaussians.png"]
    captured = capsys.readouterr()
    assert "skipping generation.png" in captured.err and "elbo_gap.png" in captured.out
