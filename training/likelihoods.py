"""The observation models Pr(x|z): each states its density on the data space exactly.

- GaussianLikelihood: Pr(x|z) = Norm[x; f[z, phi], sigma^2 I] on R^D, spherical sigma either fixed
  (the chapter's model) or one learned scalar. The mean f[z] is sigmoid(h), in (0, 1) like the
  pixels, or h itself (mean_activation = "identity").
- BernoulliLikelihood: Pr(x|z) = prod_d p_d^x_d (1 - p_d)^(1 - x_d) on {0, 1}^D, p = sigmoid(h):
  a probability mass, for binarized images.
Both take the decoder's pre-activation h (N, C, H, W) and return log Pr(x|z) per image (N,).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from service.manifest import LOG_2PI
from training.config import ModelConfig
from training.distributions import bernoulli_log_prob_logits


class GaussianLikelihood(nn.Module):
    kind = "gaussian"

    def __init__(self, sigma: float, learn: bool, sigma_min: float, mean_activation: str = "sigmoid"):
        super().__init__()
        self.mean_activation = mean_activation
        log_sigma = torch.tensor(math.log(sigma))
        if learn:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.log_sigma_min = math.log(sigma_min)

    def clamped_log_sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(min=self.log_sigma_min)

    @property
    def sigma(self) -> float:
        return float(self.clamped_log_sigma().detach().exp())

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h) if self.mean_activation == "sigmoid" else h

    def log_prob(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log Norm[x; f[z], sigma^2 I] = -D/2 log(2 pi sigma^2) - ||x - f[z]||^2 / (2 sigma^2) per image, in the
        dtype of x: (N,). The spherical density's sum over the D pixels in closed form: one squared distance
        per image rather than D log-densities summed (fewer full-size operations in a training step)."""
        mean = self.mean(h.to(x.dtype))
        log_var = (2.0 * self.clamped_log_sigma()).to(x.dtype)
        squared_distance = (x - mean).square().flatten(1).sum(1)  # (N,)
        return -0.5 * (x[0].numel() * (LOG_2PI + log_var) + squared_distance * torch.exp(-log_var))

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = f[z] + sigma * eps: the chapter's generative process (values may leave [0, 1])."""
        noise = torch.randn(h.shape, generator=generator, dtype=h.dtype)
        return self.mean(h) + self.clamped_log_sigma().exp() * noise


class BernoulliLikelihood(nn.Module):
    kind = "bernoulli"

    @property
    def sigma(self) -> None:
        return None

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h)

    def log_prob(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob_logits(x, h.to(x.dtype)).flatten(1).sum(1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(h), generator=generator)


def build_likelihood(cfg: ModelConfig) -> GaussianLikelihood | BernoulliLikelihood:
    if cfg.likelihood == "gaussian":
        return GaussianLikelihood(cfg.sigma, cfg.learn_sigma, cfg.sigma_min, cfg.mean_activation)
    return BernoulliLikelihood()
