"""The two-level VAE: its importance-sampled log-likelihood against the exact value of a linear-Gaussian
hierarchy, its ELBO identity, training, and export with the prior graph."""

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy import stats

from service.manifest import load_manifest
from training.checkpoint import load_checkpoint
from training.config import ModelConfig
from training.elbo import elbo
from training.estimators import log_likelihood
from training.export import export_model
from training.hierarchical import TwoLevelVAE

SHAPE = (1, 2, 2)
SIGMA = 0.4


def _linear_hierarchy() -> tuple[TwoLevelVAE, np.ndarray]:
    """z2 ~ N(0, I_1); z1 = A z2 + c + s_p eps (D1 = 2); x = W z1 + b + sigma eps (D = 4).
    Then x ~ Norm[W c + b, W (A A^T + diag s_p^2) W^T + sigma^2 I] exactly."""
    rng = np.random.default_rng(0)
    cfg = ModelConfig(arch="mlp", latent_dim=2, latent_dim2=1, hidden=(), prior_hidden=(), likelihood="gaussian",
                      sigma=SIGMA, learn_sigma=False, mean_activation="identity", hierarchy="two-level",
                      logvar_min=-30, logvar_max=30)
    model = TwoLevelVAE(cfg, SHAPE).double()
    w, b = rng.normal(size=(4, 2)), rng.normal(size=4) * 0.2
    a, c, log_sp2 = rng.normal(size=(2, 1)), rng.normal(size=2) * 0.3, np.log([0.3, 0.5])
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(torch.from_numpy(w))
        model.decoder.net[0].bias.copy_(torch.from_numpy(b))
        prior = model.prior_net[0]
        prior.weight.zero_()
        prior.weight[:2] = torch.from_numpy(a)
        prior.bias[:2] = torch.from_numpy(c)
        prior.bias[2:] = torch.from_numpy(log_sp2)
        # The proposal: the exact joint posterior's means (affine in x) with its marginal variances
        # inflated 1.5x and the correlations dropped (mean-field), so q != posterior but covers it.
        u_cov = np.zeros((3, 3))  # prior of u = (z1, z2)
        u_cov[:2, :2] = a @ a.T + np.diag(np.exp(log_sp2))
        u_cov[:2, 2:] = a
        u_cov[2:, :2] = a.T
        u_cov[2, 2] = 1.0
        u_mean = np.concatenate([c, [0.0]])
        h = np.hstack([w, np.zeros((4, 1))])  # x = H u + b + sigma eps
        post_cov = np.linalg.inv(np.linalg.inv(u_cov) + h.T @ h / SIGMA**2)
        gain = post_cov @ h.T / SIGMA**2  # posterior mean = gain (x - b) + post_cov P^-1 m
        enc = model.encoder.net[0]
        enc.weight.zero_()
        enc.weight[:3] = torch.from_numpy(gain)
        enc.bias[:3] = torch.from_numpy(post_cov @ np.linalg.inv(u_cov) @ u_mean - gain @ b)
        enc.bias[3:] = torch.from_numpy(np.log(1.5 * np.diag(post_cov)))
    cov = w @ (a @ a.T + np.diag(np.exp(log_sp2))) @ w.T + SIGMA**2 * np.eye(4)
    x = rng.multivariate_normal(w @ c + b, cov, size=3)
    model.exact = stats.multivariate_normal(w @ c + b, cov).logpdf(x)  # type: ignore[attr-defined]
    return model.eval(), x


def test_importance_sampling_reaches_the_exact_log_likelihood_of_a_linear_hierarchy():
    model, x = _linear_hierarchy()
    xt = torch.from_numpy(x).view(3, *SHAPE)
    exact = model.exact
    big = log_likelihood(model, xt, 40_000, chunk=5000, rng=np.random.default_rng(0)).log_likelihood.numpy()
    np.testing.assert_allclose(big, exact, atol=0.02)
    one = np.mean([log_likelihood(model, xt, 1, rng=np.random.default_rng(s)).log_likelihood.numpy()
                   for s in range(400)], axis=0)
    assert np.all(one < exact - 0.05)  # K = 1 is the ELBO: below, with this rough proposal
    with torch.no_grad():
        mc_elbo = elbo(model, xt.repeat(20000, 1, 1, 1), generator=torch.Generator().manual_seed(0)).elbo
    mc_elbo = mc_elbo.view(20000, 3).mean(0).numpy()
    np.testing.assert_allclose(mc_elbo, one, atol=0.15)  # the analytic-KL ELBO has the same expectation
    assert np.all(mc_elbo < exact)


def test_gaussian_kl_matches_scipy_monte_carlo_free_formula():
    from training.distributions import DiagonalGaussian

    q = DiagonalGaussian(torch.tensor([[0.3, -1.0]], dtype=torch.float64),
                         torch.tensor([[-0.5, 0.2]], dtype=torch.float64))
    p_mu, p_lv = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.4, -1.0]], dtype=torch.float64)
    kl = float(q.kl(DiagonalGaussian(p_mu, p_lv))[0])
    v0, v1 = np.exp([-0.5, 0.2]), np.exp([0.4, -1.0])
    expected = 0.5 * np.sum(np.log(v1 / v0) + (v0 + (np.array([0.3, -1.0]) - [1.0, 0.0]) ** 2) / v1 - 1)
    assert kl == pytest.approx(expected, rel=1e-12)
    assert float(q.kl(q)[0]) == pytest.approx(0.0, abs=1e-12)


def test_two_level_training_raises_the_elbo_and_exports_with_its_prior(two_level_digits, tmp_path):
    ckpt = load_checkpoint(two_level_digits)
    assert ckpt.history[-1]["test_elbo"] > ckpt.history[0]["test_elbo"] + 10
    model = ckpt.build_model()
    assert isinstance(model, TwoLevelVAE)
    folder = export_model(ckpt, tmp_path, "two-level")
    manifest = load_manifest(folder)
    assert manifest.hierarchy.latent_dims == [4, 3] and "prior.onnx" in manifest.files
    assert list(manifest.encoder.outputs) == ["mu", "logvar", "mu2", "logvar2"]
    prior = ort.InferenceSession(str(folder / "prior.onnx"), providers=["CPUExecutionProvider"])
    z2 = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    m, logvar = prior.run(None, {"z2": z2})
    with torch.no_grad():
        p = model.prior(0, torch.from_numpy(z2))
    np.testing.assert_allclose(m, p.mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(logvar, p.logvar.numpy(), atol=1e-5)
    samples = model.sample(6, torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 8, 8) and math.isfinite(float(samples.sum()))
