"""The estimators on a linear-Gaussian model, where everything is known in closed form.

Model: z ~ Norm[0, I_2], x = W z + b + sigma * eps, x in R^4 (a 1x2x2 "image"), so
  Pr(x) = Norm[x; b, W W^T + sigma^2 I]  and  Pr(z|x) = Norm[S W^T (x - b) / sigma^2, S],
  S = (I + W^T W / sigma^2)^-1.
W has orthogonal columns, so S is diagonal and the exact posterior is a diagonal-Gaussian q: the
project's own VAE (MLP with no hidden layer, identity mean) can represent model and posterior exactly.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from training.config import ModelConfig
from training.distributions import DiagonalGaussian
from training.elbo import elbo
from training.estimators import log_likelihood
from training.models import VAE

SIGMA = 0.5
SHAPE = (1, 2, 2)


def _linear_gaussian() -> tuple[VAE, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    q_basis, _ = np.linalg.qr(rng.normal(size=(4, 2)))
    w = q_basis @ np.diag([1.5, 0.7])  # (4, 2), orthogonal columns
    b = rng.normal(size=4) * 0.3
    cfg = ModelConfig(arch="mlp", latent_dim=2, hidden=(), likelihood="gaussian", sigma=SIGMA,
                      learn_sigma=False, mean_activation="identity", logvar_min=-30, logvar_max=30)
    model = VAE(cfg, SHAPE).double()
    post_cov = np.linalg.inv(np.eye(2) + w.T @ w / SIGMA**2)  # diagonal S
    a = post_cov @ w.T / SIGMA**2  # posterior mean = a (x - b)
    with torch.no_grad():
        dec = model.decoder.net[0]
        dec.weight.copy_(torch.from_numpy(w))
        dec.bias.copy_(torch.from_numpy(b))
        enc = model.encoder.net[0]
        enc.weight.zero_()
        enc.weight[:2] = torch.from_numpy(a)
        enc.bias[:2] = torch.from_numpy(-a @ b)
        enc.bias[2:] = torch.from_numpy(np.log(np.diag(post_cov)))
    return model.eval(), w, b


def _exact_log_px(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return stats.multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(4)).logpdf(x)


def _closed_form_elbo(x: np.ndarray, mu: np.ndarray, var: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    """E_q[log Norm[x; W z + b, sigma^2 I]] - KL[q || Norm(0, I)], both in closed form."""
    resid = x - b - w @ mu
    expected_loglik = -0.5 * (4 * math.log(2 * math.pi * SIGMA**2)
                              + (resid @ resid + np.sum(var * np.sum(w**2, 0))) / SIGMA**2)
    kl = 0.5 * np.sum(mu**2 + var - 1 - np.log(var))
    return float(expected_loglik - kl)


def _kl_gaussians(mu0, cov0, mu1, cov1) -> float:
    inv1 = np.linalg.inv(cov1)
    d = mu1 - mu0
    return 0.5 * float(np.trace(inv1 @ cov0) + d @ inv1 @ d - len(mu0)
                       + np.log(np.linalg.det(cov1) / np.linalg.det(cov0)))


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, *SHAPE)))


def _worse_proposal(model: VAE) -> VAE:
    """The same decoder, an encoder whose means are shifted and variances inflated."""
    with torch.no_grad():
        model.encoder.net[0].bias[:2] += torch.tensor([0.4, -0.3], dtype=torch.float64)
        model.encoder.net[0].bias[2:] += 0.8
    return model


def test_exact_posterior_proposal_gives_exact_log_likelihood_for_any_k():
    """With q = Pr(z|x), every importance weight equals Pr(x): the estimate is exact even at K = 1."""
    model, w, b = _linear_gaussian()
    x = _images(6)
    exact = _exact_log_px(x.flatten(1).numpy(), w, b)
    for k in (1, 7, 300):
        est = log_likelihood(model, x, k, chunk=64, rng=np.random.default_rng(k))
        np.testing.assert_allclose(est.log_likelihood.numpy(), exact, atol=1e-9)
        np.testing.assert_allclose(est.effective_sample_size.numpy(), est.final, rtol=1e-6)  # even weights


def test_elbo_equals_log_likelihood_minus_kl_to_posterior():
    """Prince eq. 17.17: ELBO = log Pr(x) - KL[q(z|x) || Pr(z|x)], here for a proposal q != posterior,
    with the ELBO in closed form and the project's one-sample `elbo` averaged over 200k draws."""
    model, w, b = _linear_gaussian()
    model = _worse_proposal(model)
    x = _images(3)
    post_cov = np.linalg.inv(np.eye(2) + w.T @ w / SIGMA**2)
    with torch.no_grad():
        (q,) = model.encode(x)
    for n in range(3):
        xn, mu, var = x[n].flatten().numpy(), q.mu[n].numpy(), q.logvar[n].exp().numpy()
        post_mu = post_cov @ w.T @ (xn - b) / SIGMA**2
        gap = _kl_gaussians(mu, np.diag(var), post_mu, post_cov)
        closed = _closed_form_elbo(xn, mu, var, w, b)
        log_px = float(_exact_log_px(xn, w, b))
        assert gap > 0.05  # the proposal really is worse
        assert closed == pytest.approx(log_px - gap, abs=1e-9)
        reps = x[n : n + 1].expand(200_000, *SHAPE)
        with torch.no_grad():
            draws = elbo(model, reps, generator=torch.Generator().manual_seed(n)).elbo
        se = float(draws.std()) / math.sqrt(len(draws))
        assert abs(float(draws.mean()) - closed) < 5 * se


def test_importance_sampling_tightens_towards_exact_value_as_k_grows():
    """With a worse proposal the ELBO lies below log Pr(x); the estimate's bias shrinks with K (K = 1, 10: q alone),
    and from K = 13, where the budget pays for fitting the proposal, it is the exact posterior: no bias left."""
    model, w, b = _linear_gaussian()
    model = _worse_proposal(model)
    x = _images(1)
    exact = float(_exact_log_px(x.flatten().numpy(), w, b))
    with torch.no_grad():
        elbo_mean = float(elbo(model, x.expand(100_000, *SHAPE), generator=torch.Generator().manual_seed(0))
                          .elbo.mean())
    assert elbo_mean < exact - 0.05
    bias, se = {}, {}
    for k in (1, 10, 100, 2000):
        rng = np.random.default_rng(k)  # 1000 independent estimates per K: successive draws of one stream
        est = torch.cat([log_likelihood(model, x, k, chunk=2000, rng=rng).log_likelihood for _ in range(1000)])
        bias[k] = exact - float(est.mean())
        se[k] = float(est.std()) / math.sqrt(len(est))
    assert abs(bias[1] - (exact - elbo_mean)) < 5 * se[1]  # K = 1 is the one-sample ELBO
    assert bias[1] > bias[10] > 0.01
    assert abs(bias[100]) < 1e-6 and abs(bias[2000]) < 1e-6


def test_fitted_proposal_is_the_exact_posterior_even_from_a_worse_encoder():
    """From the shifted, inflated q, one Gauss-Newton step of the proposal fit (service/laplace.py) lands on the
    exact posterior of a linear-Gaussian model: every final weight equals Pr(x), so the estimate is exact and the
    ESS is the number of final draws, where q's own weights are uneven."""
    model, w, b = _linear_gaussian()
    worse = _worse_proposal(model)
    x = _images(8)
    exact = _exact_log_px(x.flatten(1).numpy(), w, b)
    plain = log_likelihood(worse, x, 20, rng=np.random.default_rng(0))  # too few draws to fit: q alone
    assert np.all(plain.effective_sample_size.numpy() < 0.8 * 20)
    fitted = log_likelihood(worse, x, 1000, rng=np.random.default_rng(0))
    assert fitted.final == 1000 - 100 - 3 * 5  # the ELBO's draws, three steps of 2D + 1 probes, the final draws
    np.testing.assert_allclose(fitted.log_likelihood.numpy(), exact, atol=1e-8)
    np.testing.assert_allclose(fitted.effective_sample_size.numpy(), fitted.final, rtol=1e-8)
    (q,) = worse.encode(x)
    closed = [_closed_form_elbo(xi, mu, var, w, b) for xi, mu, var in
              zip(x.flatten(1).numpy(), q.mu.detach().numpy(), q.logvar.exp().detach().numpy(), strict=True)]
    np.testing.assert_allclose(fitted.elbo.numpy(), closed, atol=0.5)  # 100 draws from q


def test_reparameterized_gradient_matches_analytic_gradient():
    """d ELBO / d (mu, logvar) from reparameterized samples vs the closed form's derivative:
    dE/dmu = W^T (x - b - W mu) / sigma^2 - mu,
    dE/dlogvar_j = -v_j |W_j|^2 / (2 sigma^2) - v_j / 2 + 1/2."""
    model, w, b = _linear_gaussian()
    xn = _images(1, seed=5)
    mu = torch.tensor([0.3, -0.8], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([-1.0, 0.4], dtype=torch.float64, requires_grad=True)
    m = 400_000
    q = DiagonalGaussian(mu.expand(m, 2), logvar.expand(m, 2))
    z = q.rsample(torch.Generator().manual_seed(0))
    x_rep = xn.expand(m, *SHAPE)
    objective = (model.decode(z).log_prob(x_rep) - q.kl()).mean()
    g_mu, g_logvar = torch.autograd.grad(objective, (mu, logvar))
    x_np, mu_np, var_np = xn.flatten().numpy(), mu.detach().numpy(), logvar.detach().exp().numpy()
    analytic_mu = w.T @ (x_np - b - w @ mu_np) / SIGMA**2 - mu_np
    analytic_logvar = -var_np * np.sum(w**2, 0) / (2 * SIGMA**2) - var_np / 2 + 0.5
    np.testing.assert_allclose(g_mu.numpy(), analytic_mu, rtol=0.02, atol=0.02)
    np.testing.assert_allclose(g_logvar.numpy(), analytic_logvar, rtol=0.02, atol=0.02)


def test_an_image_gets_the_same_estimate_alone_or_in_a_batch():
    """The draws depend on the seed only (the contract the service shares): image 1 of three, scored alone,
    gives the same log-likelihood and effective sample size."""
    model, _, _ = _linear_gaussian()
    x = _images(3)
    batch = log_likelihood(model, x, 300, chunk=64, rng=np.random.default_rng(3))
    alone = log_likelihood(model, x[1:2], 300, chunk=300, rng=np.random.default_rng(3))
    assert float(alone.log_likelihood[0]) == pytest.approx(float(batch.log_likelihood[1]), abs=1e-12)
    assert float(alone.stderr[0]) == pytest.approx(float(batch.stderr[1]), rel=1e-9, abs=1e-8)  # ~0: exact fit
