"""The service's one numpy log-likelihood estimator (service/estimator.py), for every model kind:
- against training's torch estimator on the same exported model, images, K and seed, called directly;
- against closed forms: linear-Gaussian models whose log Pr(x) is a Gaussian density."""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from service.distributions import DiagonalGaussian, GaussianLikelihood
from service.estimator import log_likelihood
from service.metrics import Metrics
from service.model import load_model
from service.offload import Workers
from service.registry import load_options
from service.settings import Settings
from tests.service.conftest import DIGITS, TWO_LEVEL


def served(folder):
    """The exported folder loaded as the service loads it (graphs run on the calling thread)."""
    settings = Settings(providers="CPUExecutionProvider", batching=False, intra_op_threads=1)
    return load_model(folder, load_options(settings, Metrics(), Workers(1)))


@pytest.mark.parametrize("name, checkpoint", [(DIGITS, "trained_digits"), (TWO_LEVEL, "two_level_digits")])
def test_numpy_estimator_equals_the_torch_estimator(model_dir, request, name, checkpoint):
    from training.checkpoint import load_checkpoint
    from training.estimators import log_likelihood as torch_log_likelihood

    x = np.random.default_rng(3).uniform(0.02, 0.98, size=(5, 1, 8, 8)).astype(np.float32)
    ours = log_likelihood(served(model_dir / name), x, k=600, seed=42, chunk=64)
    model = load_checkpoint(request.getfixturevalue(checkpoint)).build_model()
    theirs = torch_log_likelihood(model, torch.from_numpy(x), 600, chunk=250, rng=np.random.default_rng(42))
    np.testing.assert_allclose(ours.log_likelihood, theirs.log_likelihood.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours.elbo, theirs.elbo.numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours.effective_sample_size, theirs.effective_sample_size.numpy(), rtol=1e-3)
    assert ours.k == 600 and ours.final == theirs.final < 600  # the ELBO's draws and the fit's probes first
    assert np.all(ours.log_likelihood >= ours.elbo)  # the estimate above the ELBO of q


def test_chunking_does_not_change_the_estimate(model_dir):
    model = served(model_dir / TWO_LEVEL)
    x = np.random.default_rng(0).uniform(size=(3, 1, 8, 8)).astype(np.float32)
    a, b = (log_likelihood(model, x, k=300, seed=5, chunk=c) for c in (300, 7))
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=0, atol=1e-9)


@dataclass
class LinearGaussian:
    """z_top ~ Norm[0, I], z_l | z_{l+1} ~ Norm[A_l z_{l+1} + a_l, diag s_l^2], x | z_1 ~ Norm[W z_1 + b, sigma^2 I]:
    a latent-variable model with the service's interface whose marginal Pr(x) is Gaussian, and whose proposal
    q(z_l|x) is given (here independent of x, so the estimator's only approximation is sampling)."""

    w: np.ndarray
    b: np.ndarray
    links: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (A, a, s) from level l + 1 to level l
    proposal: list[DiagonalGaussian]  # q(z_l|x), one row broadcast over the images
    likelihood: GaussianLikelihood

    def posterior(self, x):
        return [DiagonalGaussian(np.repeat(q.mean, len(x), 0), np.repeat(q.logvar, len(x), 0)) for q in self.proposal]

    def priors(self, z):
        return [DiagonalGaussian(upper @ a.T + shift, np.broadcast_to(2 * np.log(s), upper.shape[:-1] + s.shape))
                for (a, shift, s), upper in zip(self.links, z[1:], strict=True)] + \
            [DiagonalGaussian.standard(z[-1].shape)]

    def decode(self, z1):
        return [(z1 @ self.w.T + self.b).reshape(len(z1), 1, 1, -1)]  # the likelihood's parameters: its mean

    def marginal(self):
        """Mean and covariance of x."""
        top = self.links[-1][0].shape[1] if self.links else self.w.shape[1]
        mean, cov = np.zeros(top), np.eye(top)
        for a, shift, s in reversed(self.links):  # down the levels: z_l = A z_{l+1} + a + s eps
            mean, cov = a @ mean + shift, a @ cov @ a.T + np.diag(s**2)
        sigma = self.likelihood.sigma
        return self.w @ mean + self.b, self.w @ cov @ self.w.T + sigma**2 * np.eye(len(self.b))


def test_flat_model_with_the_exact_posterior_is_exact_for_any_k():
    """With q = the true posterior every importance weight equals Pr(x): the estimate is exact, ESS = K."""
    rng = np.random.default_rng(0)
    b, sigma, x = rng.normal(size=3), 0.7, rng.normal(size=3)
    w = np.array([[1.5, 0.0], [0.0, -0.5], [0.0, 0.0]])  # orthogonal columns: the posterior is diagonal
    cov = np.linalg.inv(np.eye(2) + w.T @ w / sigma**2)  # Pr(z|x) = Norm[cov W^T (x - b) / sigma^2, cov]
    mean = cov @ w.T @ (x - b) / sigma**2
    q = DiagonalGaussian(mean[None], np.log(np.diag(cov))[None])
    model = LinearGaussian(w, b, [], [q], GaussianLikelihood(sigma))
    exact = multivariate_normal(*model.marginal()).logpdf(x)
    result = log_likelihood(model, x.reshape(1, 1, 1, 3), k=7, seed=1, chunk=3)
    assert result.log_likelihood[0] == pytest.approx(exact, abs=1e-9)
    assert result.elbo[0] == pytest.approx(exact, abs=1e-9) and result.effective_sample_size[0] == pytest.approx(7)


def test_two_level_model_converges_to_the_closed_form():
    """A two-level linear-Gaussian model, a broad factorized proposal, K = 200,000: within a few standard errors
    of the exact log-likelihood (the standard error from the weights' spread)."""
    rng = np.random.default_rng(1)
    links = [(np.array([[0.8], [-0.3]]), np.array([0.1, 0.0]), np.array([0.5, 0.6]))]  # z2 (1) -> z1 (2)
    w, b, sigma = np.array([[1.0, 0.4], [-0.2, 0.9], [0.3, 0.3]]), np.zeros(3), 0.8
    proposal = [DiagonalGaussian(np.zeros((1, 2)), np.full((1, 2), math.log(1.5))),
                DiagonalGaussian(np.zeros((1, 1)), np.zeros((1, 1)))]
    model = LinearGaussian(w, b, links, proposal, GaussianLikelihood(sigma))
    x = rng.normal(size=3)
    exact = multivariate_normal(*model.marginal()).logpdf(x)
    result = log_likelihood(model, x.reshape(1, 1, 1, 3), k=200_000, seed=2, chunk=50_000)
    stderr = 1 / math.sqrt(result.effective_sample_size[0])  # delta method: sd of log mean w ~ 1 / sqrt(ESS)
    assert abs(result.log_likelihood[0] - exact) < 4 * stderr + 1e-3
    assert result.effective_sample_size[0] > 1000  # a proposal this broad keeps the weights well spread


def test_an_image_gets_the_same_answer_alone_or_anywhere_in_a_batch(model_dir):
    """The noise depends on the seed only, not on the batch: image 2 scored alone, first of a batch of two, and
    at place 2 of three give equal answers (also on the two-level model's two noise blocks)."""
    for name in (DIGITS, TWO_LEVEL):
        model = served(model_dir / name)
        x = np.random.default_rng(4).uniform(0.02, 0.98, size=(3, 1, 8, 8)).astype(np.float32)
        batch = log_likelihood(model, x, k=200, seed=9, chunk=64)
        alone = log_likelihood(model, x[2:], k=200, seed=9, chunk=64)
        first = log_likelihood(model, x[[2, 0]], k=200, seed=9, chunk=37)
        for other in (alone, first):
            assert other.log_likelihood[0] == pytest.approx(batch.log_likelihood[2], abs=1e-9)
            assert other.effective_sample_size[0] == pytest.approx(batch.effective_sample_size[2], rel=1e-9)
        assert batch.log_likelihood[0] == pytest.approx(first.log_likelihood[1], abs=1e-9)


def test_standard_error_matches_the_spread_of_independent_estimates():
    """sqrt(1 / ESS - 1 / K) against the standard deviation of 400 estimates with other seeds, on a flat
    linear-Gaussian model with a proposal 2x too broad (weights spread, ESS well above 1). K = 12 is too few draws
    to pay for fitting the proposal (service/laplace.py), which here would be exact and leave no spread."""
    rng = np.random.default_rng(5)
    w, b, sigma, x = rng.normal(size=(3, 2)), np.zeros(3), 0.9, rng.normal(size=3)
    cov = np.linalg.inv(np.eye(2) + w.T @ w / sigma**2)
    mean = cov @ w.T @ (x - b) / sigma**2
    q = DiagonalGaussian(mean[None], np.log(2 * np.diag(cov))[None])
    model = LinearGaussian(w, b, [], [q], GaussianLikelihood(sigma))
    estimates = [log_likelihood(model, x.reshape(1, 1, 1, 3), k=12, seed=s, chunk=200) for s in range(400)]
    spread = np.std([e.log_likelihood[0] for e in estimates])
    reported = np.mean([e.stderr[0] for e in estimates])
    assert all(e.final == 12 for e in estimates)
    assert 3 < np.mean([e.effective_sample_size[0] for e in estimates]) < 11.5
    assert reported == pytest.approx(spread, rel=0.15)
    assert log_likelihood(model, x.reshape(1, 1, 1, 3), k=1, seed=0).stderr[0] == 0.0  # one draw: ESS = K
