"""Pure log-density and KL functions of tensors: the pieces of the ELBO and of the estimators.

All functions work in the dtype they are given (the estimators pass float64) and return
elementwise values, so callers choose which axes to sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.manifest import LOG_2PI


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log Norm[x; mean, exp(log_var)] per element: -0.5 (log 2pi + log_var + (x - mean)^2 / var)."""
    return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log Norm[z; 0, 1] per element: the prior Pr(z) of the chapter."""
    return -0.5 * (LOG_2PI + z**2)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[Norm(mu, diag exp(logvar)) || Norm(0, I)] per latent dimension, in closed form:
    0.5 (mu^2 + sigma^2 - 1 - log sigma^2)   (Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)


def bernoulli_log_prob_logits(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern[x; sigmoid(logits)] per element for x in {0, 1}, stable for large |logits|:
    x * l - softplus(l)."""
    return x * logits - torch.nn.functional.softplus(logits)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
                ) -> torch.Tensor:
    """KL[Norm(mu_q, diag e^logvar_q) || Norm(mu_p, diag e^logvar_p)] per element, in closed form:
    0.5 (logvar_p - logvar_q + (e^logvar_q + (mu_q - mu_p)^2) / e^logvar_p - 1)."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1)


@dataclass(frozen=True)
class StandardNormal:
    """The prior Pr(z) = Norm[0, I] of a model's top latent level, over `dim` dimensions."""

    dim: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log Norm[z; 0, I] summed over D; z is (..., N, D), result (..., N)."""
        return standard_normal_log_density(z).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((n, self.dim), generator=generator)  # (n, D)

    def moments(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean 0 and variance 1 in the shape and dtype of `like` (..., N, D)."""
        return torch.zeros_like(like), torch.ones_like(like)


@dataclass
class DiagonalGaussian:
    """Norm[mu, diag(exp(logvar))] with one row per image: the encoder's q(z|x), or a learned conditional
    prior Pr(z1|z2). Tensors are (N, D), or (..., N, D) for several draws per image."""

    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized draw z = mu + sigma * eps, eps ~ Norm[0, I]: gradients flow to mu, logvar."""
        eps = torch.randn(self.mu.shape, generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def rsample_k(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """k draws per row: (k, N, D)."""
        shape = (k, *self.mu.shape)
        eps = torch.randn(shape, generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def moments(self, like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance, each (..., N, D)."""
        return self.mu, torch.exp(self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over D; z is (..., N, D), result (..., N)."""
        return gaussian_log_density(z, self.mu, self.logvar).sum(-1)

    def kl(self, prior: DiagonalGaussian | StandardNormal | None = None) -> torch.Tensor:
        """KL[self || prior] summed over D, in closed form: (N,). prior None or StandardNormal: Norm(0, I)."""
        if prior is None or isinstance(prior, StandardNormal):
            return kl_to_standard_normal(self.mu, self.logvar).sum(-1)
        return gaussian_kl(self.mu, self.logvar, prior.mu, prior.logvar).sum(-1)

    def to(self, dtype: torch.dtype) -> DiagonalGaussian:
        return DiagonalGaussian(self.mu.to(dtype), self.logvar.to(dtype))
