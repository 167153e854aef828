"""Log-densities against scipy, and the closed-form KL against a Monte Carlo estimate."""

import numpy as np
import pytest
import torch
from scipy import stats

from training.config import ModelConfig
from training.distributions import (
    DiagonalGaussian,
    bernoulli_log_prob_logits,
    gaussian_log_density,
    kl_to_standard_normal,
    standard_normal_log_density,
)
from training.likelihoods import BernoulliLikelihood, GaussianLikelihood, build_likelihood


def test_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean, log_var = rng.normal(size=(3, 50))
    got = gaussian_log_density(*(torch.from_numpy(a) for a in (x, mean, log_var))).numpy()
    np.testing.assert_allclose(got, stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)), rtol=1e-12)
    z = rng.normal(size=20)
    np.testing.assert_allclose(standard_normal_log_density(torch.from_numpy(z)).numpy(), stats.norm.logpdf(z))


def test_diagonal_gaussian_log_prob_matches_scipy_multivariate():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(2, 4, 3))
    z = rng.normal(size=(5, 4, 3))  # (K, N, D)
    q = DiagonalGaussian(torch.from_numpy(mu), torch.from_numpy(logvar))
    got = q.log_prob(torch.from_numpy(z)).numpy()  # (K, N)
    for n in range(4):
        ref = stats.multivariate_normal(mu[n], np.diag(np.exp(logvar[n]))).logpdf(z[:, n])
        np.testing.assert_allclose(got[:, n], ref, rtol=1e-10)


def test_gaussian_likelihood_is_spherical_normal_density():
    """log Pr(x|z) = log Norm[x; f[z], sigma^2 I] on R^D, with f = sigmoid(h)."""
    lik = GaussianLikelihood(sigma=0.3, learn=False, sigma_min=1e-3)
    rng = np.random.default_rng(2)
    h = rng.normal(size=(3, 1, 2, 2))
    x = rng.uniform(size=(3, 1, 2, 2))
    got = lik(torch.from_numpy(h)).log_prob(torch.from_numpy(x)).numpy()
    mean = 1 / (1 + np.exp(-h))
    for n in range(3):
        ref = stats.multivariate_normal(mean[n].ravel(), 0.09 * np.eye(4)).logpdf(x[n].ravel())
        assert got[n] == pytest.approx(ref, rel=1e-6)


def test_learned_sigma_is_a_parameter_and_clamped():
    lik = build_likelihood(ModelConfig(sigma=0.2, learn_sigma=True, sigma_min=0.05))
    assert [name for name, _ in lik.named_parameters()] == ["log_sigma"]
    with torch.no_grad():
        lik.log_sigma.fill_(np.log(1e-6))
    assert lik.sigma == pytest.approx(0.05)
    fixed = build_likelihood(ModelConfig(sigma=0.2, learn_sigma=False))
    assert list(fixed.parameters()) == [] and fixed.sigma == pytest.approx(0.2)


def test_bernoulli_log_prob_matches_scipy_and_is_stable():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3, size=100)
    x = rng.integers(0, 2, size=100).astype(float)
    got = bernoulli_log_prob_logits(torch.from_numpy(x), torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(got, stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits))), rtol=1e-9)
    extreme = bernoulli_log_prob_logits(torch.tensor([1.0, 0.0]), torch.tensor([-200.0, 200.0]))
    np.testing.assert_allclose(extreme.numpy(), [-200.0, -200.0])  # finite where sigmoid underflows
    lik = BernoulliLikelihood()
    per_image = lik(torch.from_numpy(logits).view(4, 1, 5, 5)).log_prob(torch.from_numpy(x).view(4, 1, 5, 5))
    np.testing.assert_allclose(per_image.numpy(), got.reshape(4, 25).sum(1), rtol=1e-12)


def test_kl_closed_form_matches_monte_carlo():
    """KL[q || N(0, I)] = E_q[log q(z) - log p(z)]: the closed form against 400k draws, within 5 s.e."""
    mu = torch.tensor([[0.7, -1.5, 0.0], [2.0, 0.3, -0.4]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.5, 0.0], [-3.0, 1.2, 0.2]], dtype=torch.float64)
    q = DiagonalGaussian(mu, logvar)
    z = q.rsample_k(400_000, torch.Generator().manual_seed(0))  # (K, N, D)
    terms = q.log_prob(z) - standard_normal_log_density(z).sum(-1)  # (K, N)
    mc, se = terms.mean(0), terms.std(0) / np.sqrt(terms.shape[0])
    exact = kl_to_standard_normal(mu, logvar).sum(-1)
    assert torch.all((mc - exact).abs() < 5 * se), (mc, exact, se)
    assert torch.allclose(q.kl(), exact)
    assert torch.all(kl_to_standard_normal(torch.zeros(3), torch.zeros(3)) == 0)
