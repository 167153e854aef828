"""The importance-sampling proposal of log Pr(x): a Laplace approximation of each image's posterior, found by
Gauss-Newton from the encoder's q(z|x). Pure numpy; both estimators use it (service/estimator.py,
training/estimators.py), each supplying its own model, so the two wings give the same numbers.

Why: the encoder's q(z|x) is one network's guess for every image. On the shipped Fashion-MNIST models it sits
inside the posterior and off its centre (the amortization gap): with z ~ q the log-weights spread by about 9
nats, at K = 5000 the effective sample size has median 2, and the estimate is ~20 nats below the converged
one. A full-covariance Gaussian at the posterior's mode, with the Gauss-Newton curvature, gives weights whose
ESS is a sizeable share of K (docs/studies.md, "Converging log-likelihoods").

How: the log joint is treated as a sum of Gaussian terms in whitened residuals,

    log Pr(x, z) ~ -1/2 ||R(z)||^2 + const,   R = [(x - m(z1)) / s,  (z_l - m_l(z_{l+1})) / s_l  for each level],

with m, s^2 the mean and variance of Pr(x|z1) per pixel (the likelihood's `moments`; exact for the Gaussian
and Bernoulli likelihoods' mean, the Fisher information of the mean for the logistic ones) and m_l, s_l^2
each level's prior (the top one's Norm[0, I]), the variances held at the current point. Its Jacobian J over
the D = D1 + D2 + ... latent coordinates comes from central differences at 2D + 1 probe points (one decoder
pass each, no gradients needed: the service runs ONNX graphs), and each of `iterations` Gauss-Newton steps
moves the centre by -(J^T J)^{-1} J^T R. The proposal is Norm[c, (J^T J)^{-1}] at the visited centre with the
best surrogate log joint. For a linear decoder with a Gaussian likelihood it is the exact posterior after one
step (tests/training/test_linear_gaussian.py). The estimate is ordinary importance sampling with that
proposal, unbiased for Pr(x) whatever the fit did; its ESS says how good the fit was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ITERATIONS = 3  # Gauss-Newton steps at most (the study measured 2 and 4: docs/studies.md)
FIT_SHARE = 0.4  # of K's decoder passes at most for the probes
ELBO_DRAWS = 100  # draws from q(z|x) for the ELBO when the proposal is fitted ...
ELBO_SHARE = 0.1  # ... and at most this share of K
STEP = 0.5  # finite-difference step, in units of q's standard deviation per coordinate

# What a model supplies: at probe points z (P, N, D) the terms of its log joint, each (observed, mean, variance)
# of shape (P, N, M_t): the pixels under Pr(x|z1), then each latent level under its prior.
Terms = Callable[[np.ndarray], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class Schedule:
    """How K decoder passes per image are spent: `elbo_draws` draws from q(z|x), `iterations` Gauss-Newton
    steps of 2D + 1 probes each, then `final` draws from the fitted proposal that make the estimate. Without
    iterations (K too small to pay for one) all K draws come from q and give both the estimate and the ELBO."""

    elbo_draws: int
    iterations: int
    final: int

    @classmethod
    def for_k(cls, k: int, dim: int) -> Schedule:
        """K = 1000 at D = 32: 100 + 3 x 65 + 705; K = 5000: 100 + 195 + 4705; K < 163 at D = 32: all from q."""
        iterations = min(ITERATIONS, int(FIT_SHARE * k) // probes(dim))
        if iterations == 0:
            return cls(0, 0, k)
        elbo = min(ELBO_DRAWS, int(ELBO_SHARE * k))
        return cls(elbo, iterations, k - elbo - iterations * probes(dim))


def probes(dim: int) -> int:
    return 2 * dim + 1


@dataclass(frozen=True)
class GaussianProposal:
    """Norm[mean, L L^T] per image: mean (N, D), scale_tril L (N, D, D) lower triangular."""

    mean: np.ndarray
    scale_tril: np.ndarray

    @classmethod
    def diagonal(cls, mean: np.ndarray, std: np.ndarray) -> GaussianProposal:
        """q(z|x) of the encoder: a diagonal covariance."""
        return cls(mean, std[..., :, None] * np.eye(mean.shape[-1]))

    def sample(self, eps: np.ndarray) -> np.ndarray:
        """z = mean + L eps for noise rows eps (k, 1, D) shared by the images: (k, N, D)."""
        rows = np.broadcast_to(eps, (len(eps), *self.mean.shape))
        return self.mean + np.einsum("nij,knj->kni", self.scale_tril, rows)

    def log_prob_of_noise(self, eps: np.ndarray) -> np.ndarray:
        """log density of z = sample(eps) under the proposal: log Norm[eps; 0, I] - log det L, (k, N)."""
        log_det = np.sum(np.log(np.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1)  # (N,)
        return (-0.5 * np.sum(eps**2, -1) - 0.5 * eps.shape[-1] * math.log(2 * math.pi)) - log_det


def fit(terms: Terms, q_mean: np.ndarray, q_std: np.ndarray, iterations: int, chunk: int) -> GaussianProposal:
    """The Laplace proposal of each image (module docstring), from the encoder's mean and standard deviation over
    all levels (N, D), with `iterations` >= 1 Gauss-Newton steps, the probe points evaluated `chunk` at a time
    (memory: the Jacobian (N, M, D) and one chunk's terms)."""
    n, d = q_mean.shape
    step = STEP * q_std  # (N, D)
    centre = q_mean
    best = np.full(n, -np.inf)
    best_mean, best_precision = q_mean.copy(), np.zeros((n, d, d))
    for _ in range(iterations):
        offsets = step[None] * np.eye(d)[:, None, :]  # (D, N, D): +h_j e_j for each coordinate j
        points = np.concatenate([centre[None], centre + offsets, centre - offsets])  # (2D + 1, N, D)
        sign = np.concatenate([[0.0], np.ones(d), -np.ones(d)])  # how each probe enters the central difference
        column = np.concatenate([[0], np.arange(d), np.arange(d)])  # ... and which coordinate's
        jacobian = np.empty(0)
        for start in range(0, len(points), chunk):
            block = points[start : start + chunk]
            found = terms(block)  # one decoder pass over the block
            observed, mean, variance = (np.concatenate([t[i].reshape(len(block), n, -1) for t in found], -1)
                                        for i in range(3))
            if start == 0:  # the centre is probe 0: its variances whiten every probe's residuals
                scale = np.sqrt(variance[0])  # (N, M)
                residual = (observed[0] - mean[0]) / scale  # (N, M)
                jacobian = np.zeros((n, scale.shape[1], d))  # dR/dz (N, M, D), summed over the probes
            for i, probe in enumerate(range(start, start + len(observed))):
                if sign[probe]:
                    j = column[probe]
                    jacobian[:, :, j] += sign[probe] * (observed[i] - mean[i]) / scale / (2 * step[:, j, None])
        precision = jacobian.transpose(0, 2, 1) @ jacobian  # J^T J (N, D, D)
        gradient = -np.einsum("nmd,nm->nd", jacobian, residual)  # of -1/2 ||R||^2
        surrogate = -0.5 * np.sum(residual**2, -1) - np.sum(np.log(scale), -1)  # log joint, up to a constant
        better = surrogate > best
        best = np.where(better, surrogate, best)
        best_mean = np.where(better[:, None], centre, best_mean)
        best_precision = np.where(better[:, None, None], precision, best_precision)
        finite: np.ndarray = np.all(np.isfinite(precision), axis=(1, 2))  # (N,): where J is not, no step
        solvable = np.where(finite[:, None, None], precision, np.eye(d)) + RIDGE * np.eye(d)
        with np.errstate(all="ignore"):  # a non-finite step is caught by `laplace`, image by image
            move = np.linalg.solve(solvable, np.where(finite[:, None], gradient, 0.0)[..., None])[..., 0]
        centre = centre + move
    return laplace(best_mean, best_precision, np.isfinite(best), GaussianProposal.diagonal(q_mean, q_std))


RIDGE = 1e-9  # added to J^T J's diagonal: the priors' residuals make it positive definite already


def laplace(mean: np.ndarray, precision: np.ndarray, fitted: np.ndarray, fallback: GaussianProposal
            ) -> GaussianProposal:
    """Norm[mean, precision^-1] per image; where no probe gave finite terms (`fitted` (N,) False) or that is not a
    proper Gaussian (an indefinite matrix), the image keeps `fallback`, the encoder's q: the estimate stays
    valid."""
    n, d = mean.shape
    scale_tril = fallback.scale_tril.copy()
    out_mean = fallback.mean.copy()
    for i in range(n):
        if not (fitted[i] and np.all(np.isfinite(mean[i])) and np.all(np.isfinite(precision[i]))):
            continue
        try:
            covariance = np.linalg.inv(precision[i] + RIDGE * np.eye(d))
            scale_tril[i] = np.linalg.cholesky(0.5 * (covariance + covariance.T))
            out_mean[i] = mean[i]
        except np.linalg.LinAlgError:
            continue
    return GaussianProposal(out_mean, scale_tril)
