"""The beta-TCVAE decomposition: the pairwise log-density matrix against scipy, the exact identity
MI + TC + dimension KL = log q(z|x) - log p(z), the minibatch-weighted-sampling TC against the known
total correlation of a correlated Gaussian, and the objective against the ELBO."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from training.distributions import DiagonalGaussian, kl_to_standard_normal
from training.tcvae import kl_decomposition, log_q_matrix, tcvae_objective

RHO = 0.9
GAUSSIAN_TC = -0.5 * math.log(1.0 - RHO**2)  # KL[Norm(0, S) || prod_d Norm(0, S_dd)], unit variances: 0.830 nats


def _posterior_batch(batch: int, dim: int, seed: int, dtype=torch.float64):
    """mu, logvar (B, D) of a made-up encoder, and z ~ q(z|x) (B, D)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dim, generator=g, dtype=dtype)
    logvar = 0.5 * torch.randn(batch, dim, generator=g, dtype=dtype) - 0.7
    z = DiagonalGaussian(mu, logvar).rsample(g)
    return z, mu, logvar


def _narrow_posteriors(rho: float, batch: int = 2000, sd: float = 0.1, seed: int = 0):
    """2-D posterior means from Norm[0, [[1, rho], [rho, 1]]], all with std `sd`: the aggregate posterior
    is that Gaussian smoothed by sd^2 (correlation rho / (1 + sd^2)). B = 2000, sd = 0.1 balances the
    kernel estimate's smoothing bias (-0.04 nats) against its self-term and log-of-a-sum biases."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(batch, 2, generator=g, dtype=torch.float64)
    mu = torch.stack([e[:, 0], rho * e[:, 0] + math.sqrt(1.0 - rho**2) * e[:, 1]], dim=1)
    logvar = torch.full_like(mu, 2.0 * math.log(sd))
    z = mu + sd * torch.randn(batch, 2, generator=g, dtype=torch.float64)
    return z, mu, logvar


def _decoder_log_likelihood(z: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """log Norm[x; z W, I] of fixed data x under a fixed linear decoder: (B,), differentiable in z."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(z.shape[1], 6, generator=g, dtype=z.dtype)
    x = torch.randn(z.shape[0], 6, generator=g, dtype=z.dtype)
    return -0.5 * ((x - z @ w) ** 2).sum(-1) - 3.0 * math.log(2.0 * math.pi)


@pytest.fixture(scope="module")
def correlated():
    return _narrow_posteriors(RHO)


@pytest.fixture(scope="module")
def factorised():
    return _narrow_posteriors(0.0)


def test_log_q_matrix_matches_scipy_and_its_diagonal_is_log_q_z_given_x():
    z, mu, logvar = _posterior_batch(5, 3, seed=0)
    mat = log_q_matrix(z, mu, logvar)
    assert mat.shape == (5, 5, 3)
    zn, mn, sn = z.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy())
    want = stats.norm.logpdf(zn[:, None, :], mn[None, :, :], sn[None, :, :])  # [i, j, d]: z_i under q(.|x_j)
    np.testing.assert_allclose(mat.numpy(), want, rtol=1e-12)
    diag = mat.diagonal(dim1=0, dim2=1).sum(0)  # (B,)
    torch.testing.assert_close(diag, DiagonalGaussian(mu, logvar).log_prob(z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dataset_size", [1, 64, 60000])
def test_parts_sum_exactly_to_log_q_z_given_x_minus_log_p_z(dataset_size):
    z, mu, logvar = _posterior_batch(64, 5, seed=1)
    parts = kl_decomposition(z, mu, logvar, dataset_size)
    for t in (parts.mutual_info, parts.total_correlation, parts.dimension_kl):
        assert t.shape == (64,)
    # Reference densities from torch.distributions, independent of training.distributions.
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    total = parts.mutual_info + parts.total_correlation + parts.dimension_kl
    torch.testing.assert_close(total, log_q - log_p, rtol=0.0, atol=1e-5)
    # The parts themselves are not trivial: each one varies and none is the whole.
    assert float(parts.total_correlation.std()) > 0.01 and float(parts.mutual_info.std()) > 0.01


def test_decomposition_matches_a_brute_force_minibatch_weighted_sampling_estimate():
    # Unequal posterior variances, so that swapping the roles of z_i and x_j would show.
    z, mu, logvar = _posterior_batch(7, 3, seed=6)
    n = 500
    parts = kl_decomposition(z, mu, logvar, n)
    zn, mn, sn = z.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy())
    b, d = zn.shape
    for i in range(b):
        joint = sum(np.prod([stats.norm.pdf(zn[i, k], mn[j, k], sn[j, k]) for k in range(d)]) for j in range(b))
        log_qz = math.log(joint / (b * n))
        log_qz_dims = sum(
            math.log(sum(stats.norm.pdf(zn[i, k], mn[j, k], sn[j, k]) for j in range(b)) / (b * n)) for k in range(d)
        )
        log_q_given_x = stats.norm.logpdf(zn[i], mn[i], sn[i]).sum()
        log_p = stats.norm.logpdf(zn[i]).sum()
        assert float(parts.mutual_info[i]) == pytest.approx(log_q_given_x - log_qz, rel=1e-10)
        assert float(parts.total_correlation[i]) == pytest.approx(log_qz - log_qz_dims, rel=1e-10)
        assert float(parts.dimension_kl[i]) == pytest.approx(log_qz_dims - log_p, rel=1e-10)


def test_decomposition_gradients_match_finite_differences():
    z, mu, logvar = (t.requires_grad_(True) for t in _posterior_batch(5, 2, seed=7))

    def parts(z, mu, logvar):
        p = kl_decomposition(z, mu, logvar, 100)
        return p.mutual_info, p.total_correlation, p.dimension_kl

    assert torch.autograd.gradcheck(parts, (z, mu, logvar))


@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(1.0, 6.0, 1.0), (0.0, 1.0, 0.0), (3.0, 0.5, 2.0)])
def test_objective_weights_each_part(alpha, beta, gamma):
    z, mu, logvar = _posterior_batch(16, 3, seed=8)
    log_px = _decoder_log_likelihood(z)
    parts = tcvae_objective(log_px, z, mu, logvar, 1000, alpha=alpha, beta=beta, gamma=gamma)
    ref = kl_decomposition(z, mu, logvar, 1000)
    want = log_px - alpha * ref.mutual_info - beta * ref.total_correlation - gamma * ref.dimension_kl
    torch.testing.assert_close(parts.objective, want)
    torch.testing.assert_close(parts.mutual_info, ref.mutual_info)
    torch.testing.assert_close(parts.total_correlation, ref.total_correlation)
    torch.testing.assert_close(parts.dimension_kl, ref.dimension_kl)


def test_dataset_size_shifts_the_parts_by_constants_and_leaves_gradients_alone():
    z, mu, logvar = _posterior_batch(32, 4, seed=2)
    a, b = kl_decomposition(z, mu, logvar, 1), kl_decomposition(z, mu, logvar, 1000)
    shift = math.log(1000)
    torch.testing.assert_close(b.mutual_info - a.mutual_info, torch.full_like(z[:, 0], shift))
    torch.testing.assert_close(b.total_correlation - a.total_correlation, torch.full_like(z[:, 0], 3 * shift))
    torch.testing.assert_close(b.dimension_kl - a.dimension_kl, torch.full_like(z[:, 0], -4 * shift))

    def grad(n: int) -> torch.Tensor:
        m = mu.clone().requires_grad_(True)
        tcvae_objective(torch.zeros(32, dtype=z.dtype), z, m, logvar, n, alpha=0.5, beta=6.0, gamma=2.0).loss.backward()
        return m.grad

    torch.testing.assert_close(grad(1), grad(1000))


def test_total_correlation_is_near_zero_when_the_aggregate_posterior_factorises(correlated, factorised):
    # dataset_size = 1: weights 1 / B, a kernel density estimate of q(z), so TC is on the true scale.
    tc_factorised = float(kl_decomposition(*factorised, dataset_size=1).total_correlation.mean())
    tc_correlated = float(kl_decomposition(*correlated, dataset_size=1).total_correlation.mean())
    assert abs(tc_factorised) < 0.15  # ~0.06: the self-term's bias at B = 2000, sd = 0.1
    assert abs(tc_factorised) < 0.2 * tc_correlated


def test_total_correlation_recovers_that_of_a_correlated_gaussian(correlated):
    batch = correlated[0].shape[0]
    # Weights 1 / B: the kernel density estimate, consistent for the Gaussian's TC.
    tc_kde = float(kl_decomposition(*correlated, dataset_size=1).total_correlation.mean())
    assert tc_kde == pytest.approx(GAUSSIAN_TC, abs=0.1)
    # dataset_size = B, the paper's weights 1 / (B N) = 1 / B^2: the same estimate, (D - 1) log B higher.
    tc_mws = float(kl_decomposition(*correlated, dataset_size=batch).total_correlation.mean())
    assert tc_mws - math.log(batch) == pytest.approx(GAUSSIAN_TC, abs=0.1)
    assert tc_mws == pytest.approx(tc_kde + math.log(batch), abs=1e-9)


def test_objective_with_unit_weights_matches_the_elbo():
    z, mu, logvar = _posterior_batch(2000, 4, seed=4)
    log_px = _decoder_log_likelihood(z)
    parts = tcvae_objective(log_px, z, mu, logvar, dataset_size=60000, alpha=1.0, beta=1.0, gamma=1.0)
    kl = kl_to_standard_normal(mu, logvar).sum(-1)
    torch.testing.assert_close(parts.kl, kl)
    torch.testing.assert_close(parts.elbo, log_px - kl)
    torch.testing.assert_close(parts.reconstruction, log_px)
    # Exactly: reconstruction minus the one-sample KL, whatever the MWS estimates are.
    one_sample_kl = DiagonalGaussian(mu, logvar).log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(parts.objective, log_px - one_sample_kl)
    # In expectation: the two KL estimators agree; the mean over 2000 differs by ~0.04 (one std).
    summary = parts.summary()
    assert summary["kl"] > 2.0  # a KL worth comparing against
    assert summary["objective"] == pytest.approx(summary["elbo"], abs=0.2)
    assert parts.loss.item() == pytest.approx(-summary["objective"])
    assert set(summary) == {
        "objective", "elbo", "reconstruction", "kl", "mutual_info", "total_correlation", "dimension_kl",
    }


def test_larger_beta_lowers_the_objective_where_total_correlation_is_positive(correlated):
    z, mu, logvar = correlated
    log_px = _decoder_log_likelihood(z)
    one = tcvae_objective(log_px, z, mu, logvar, dataset_size=1, beta=1.0)
    six = tcvae_objective(log_px, z, mu, logvar, dataset_size=1, beta=6.0)
    tc = six.total_correlation
    torch.testing.assert_close(six.objective - one.objective, -5.0 * tc)
    positive = tc > 0
    assert positive.float().mean() > 0.5  # a correlated batch: TC > 0 for most examples
    assert bool((six.objective[positive] < one.objective[positive]).all())
    assert bool((six.objective[~positive] >= one.objective[~positive]).all())
    assert six.summary()["objective"] < one.summary()["objective"]
    torch.testing.assert_close(six.elbo, one.elbo)  # beta does not touch the reported bound


def test_gradients_flow_to_mu_and_logvar():
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(32, 4, generator=g).requires_grad_(True)
    logvar = (0.3 * torch.randn(32, 4, generator=g) - 1.0).requires_grad_(True)
    z = DiagonalGaussian(mu, logvar).rsample(g)
    parts = tcvae_objective(_decoder_log_likelihood(z), z, mu, logvar, dataset_size=1000)
    parts.loss.backward()
    for p in (mu, logvar):
        assert p.grad is not None and p.grad.shape == (32, 4)
        assert bool(torch.isfinite(p.grad).all())
        assert float(p.grad.abs().sum()) > 0.0
        assert bool((p.grad.abs().sum(-1) > 0).all())  # every example gets a gradient
