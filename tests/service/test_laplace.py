"""The log-likelihood's proposal fit (service/laplace.py) on its own, against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from service.laplace import GaussianProposal, Schedule, fit, probes


@pytest.mark.parametrize(("k", "dim", "expected"), [
    (1, 32, Schedule(0, 0, 1)), (162, 32, Schedule(0, 0, 162)), (163, 32, Schedule(16, 1, 82)),
    (1000, 32, Schedule(100, 3, 705)), (5000, 32, Schedule(100, 3, 4705)), (1000, 48, Schedule(100, 3, 609)),
    (12, 2, Schedule(0, 0, 12)), (13, 2, Schedule(1, 1, 7)),
])
def test_schedule_spends_k_decoder_passes(k, dim, expected):
    schedule = Schedule.for_k(k, dim)
    assert schedule == expected
    assert schedule.elbo_draws + schedule.iterations * probes(dim) + schedule.final == k
    assert schedule.final >= k // 2


def test_proposal_density_is_the_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 3))
    cov = a @ a.transpose(0, 2, 1) + np.eye(3)
    proposal = GaussianProposal(rng.normal(size=(2, 3)), np.linalg.cholesky(cov))
    eps = rng.standard_normal((5, 1, 3))
    z = proposal.sample(eps)  # (5, 2, 3)
    for i in range(2):
        expected = multivariate_normal(proposal.mean[i], cov[i]).logpdf(z[:, i])
        np.testing.assert_allclose(proposal.log_prob_of_noise(eps)[:, i], expected, rtol=1e-12)


def linear_gaussian_terms(x, w, b, sigma):
    """Pr(z) = Norm[0, I], Pr(x|z) = Norm[W z + b, sigma^2 I] for N images x (N, M): the terms `fit` reads."""
    def terms(z):  # (P, N, D)
        mean = z @ w.T + b
        return [(np.broadcast_to(x, mean.shape), mean, np.full(mean.shape, sigma**2)),
                (z, np.zeros_like(z), np.ones_like(z))]
    return terms


def test_one_gauss_newton_step_finds_a_linear_gaussian_posterior_with_correlations():
    """Pr(z|x) = Norm[S W^T (x - b) / sigma^2, S], S = (I + W^T W / sigma^2)^-1, a full covariance here (W's
    columns are not orthogonal): the fit recovers it from a poor diagonal start, in any chunking."""
    rng = np.random.default_rng(1)
    w, b, sigma = rng.normal(size=(6, 3)), rng.normal(size=6), 0.5
    x = rng.normal(size=(4, 6))
    cov = np.linalg.inv(np.eye(3) + w.T @ w / sigma**2)
    means = (x - b) @ w @ cov.T / sigma**2  # (N, D)
    for chunk in (7, 100):
        proposal = fit(linear_gaussian_terms(x, w, b, sigma), np.zeros((4, 3)), np.full((4, 3), 2.0), 2, chunk)
        np.testing.assert_allclose(proposal.mean, means, atol=1e-8)
        for i in range(4):
            np.testing.assert_allclose(proposal.scale_tril[i] @ proposal.scale_tril[i].T, cov, atol=1e-8)


def test_an_image_whose_terms_are_not_finite_keeps_the_encoders_q():
    rng = np.random.default_rng(2)
    w, b, sigma = rng.normal(size=(6, 3)), np.zeros(6), 0.5
    x = rng.normal(size=(2, 6))
    good = linear_gaussian_terms(x, w, b, sigma)

    def broken(z):  # image 1's decoder gives NaN
        found = good(z)
        mean = found[0][1].copy()
        mean[:, 1] = np.nan
        return [(found[0][0], mean, found[0][2]), found[1]]

    q_mean, q_std = np.full((2, 3), 0.1), np.full((2, 3), 0.7)
    proposal = fit(broken, q_mean, q_std, 3, 100)
    np.testing.assert_array_equal(proposal.mean[1], q_mean[1])
    np.testing.assert_allclose(proposal.scale_tril[1], np.diag(q_std[1]))
    assert np.all(np.isfinite(proposal.scale_tril)) and not np.allclose(proposal.mean[0], q_mean[0])
