"""The observation models Pr(x|z): a module per likelihood turns the decoder's pre-activation h (N, C, H, W)
into a distribution object over the N images, with `log_prob(x)` (N,), `mean()` and `sample()`.

- GaussianLikelihood -> SphericalGaussian: Pr(x|z) = Norm[x; f[z, phi], sigma^2 I] on R^D, spherical sigma
  either fixed (the chapter's model) or one learned scalar. The mean f[z] is sigmoid(h), in (0, 1) like the
  pixels, or h itself (mean_activation = "identity").
- BernoulliLikelihood -> Bernoulli: Pr(x|z) = prod_d p_d^x_d (1 - p_d)^(1 - x_d) on {0, 1}^D, p = sigmoid(h):
  a probability mass, for binarized images.
- PixelGaussianLikelihood -> PixelGaussian: prod_d Norm[x_d; m_d, s_d^2], a mean and a (floored) log-variance per
  pixel: a density on dequantized images.
- LogisticLikelihood -> DiscretizedLogistic, LogisticMixtureLikelihood -> LogisticMixture: a logistic (or a
  mixture of K) per pixel, discretized to the image's L levels x = k / (L - 1): a probability mass, <= 0 in log
  (Salimans et al. 2017, PixelCNN++, with the channels independent).
Each states its density or mass on the data space exactly; log_prob works in the dtype of x (the estimators pass
float64), whatever the decoder's. The decoder gives `params_per_channel` maps per image channel; `parameters()`
names the distribution's parameters as the exported decoder graph outputs them (the service reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from service.distributions import PROB_EPS
from service.manifest import LOG_2PI
from training.config import ModelConfig
from training.distributions import bernoulli_log_prob_logits, gaussian_log_density


class PixelDistribution(Protocol):
    """Pr(x|z) for a batch of N images."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log Pr(x|z) per image, (N,), in the dtype of x (N, C, H, W)."""
        ...

    def mean(self) -> torch.Tensor:
        """E[x|z]: (N, C, H, W), the image the decoder means."""
        ...

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ Pr(x|z): (N, C, H, W)."""
        ...

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        """The distribution's parameters, by the names of the exported decoder graph's outputs (the service's)."""
        ...

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pixel the mean and variance the log-likelihood's proposal is fitted with, float64 (N, C, H, W): as
        the service's `Likelihood.moments` (service/distributions.py, which says what each is)."""
        ...


def activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.sigmoid(h) if activation == "sigmoid" else h


@dataclass
class SphericalGaussian:
    """Norm[x; f[z], sigma^2 I] per image; h (N, C, H, W) the decoder's pre-activation, log_sigma a scalar."""

    h: torch.Tensor
    log_sigma: torch.Tensor
    activation: str = "sigmoid"

    def mean(self) -> torch.Tensor:
        return activate(self.h, self.activation)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """-D/2 log(2 pi sigma^2) - ||x - f[z]||^2 / (2 sigma^2): the spherical density's sum over the D pixels
        in closed form, one squared distance per image rather than D log-densities summed."""
        mean = activate(self.h.to(x.dtype), self.activation)
        log_var = (2.0 * self.log_sigma).to(x.dtype)
        squared_distance = (x - mean).square().flatten(1).sum(1)  # (N,)
        return -0.5 * (x[0].numel() * (LOG_2PI + log_var) + squared_distance * torch.exp(-log_var))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = f[z] + sigma * eps: the chapter's generative process (values may leave [0, 1])."""
        noise = torch.randn(self.h.shape, generator=generator, dtype=self.h.dtype)
        return self.mean() + self.log_sigma.exp() * noise

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean()}  # sigma is one number: the manifest's

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean().double()
        return mean, torch.exp(2.0 * self.log_sigma.double()).expand(mean.shape)


@dataclass
class Bernoulli:
    """prod_d Bern[x_d; sigmoid(h_d)] per image: a probability mass on binary images."""

    h: torch.Tensor

    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.h)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob_logits(x, self.h.to(x.dtype)).flatten(1).sum(1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(self.h), generator=generator)

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean()}  # the probabilities

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.mean().double().clamp(PROB_EPS, 1 - PROB_EPS)  # as the service clips the exported probabilities
        return p, p * (1 - p)


@dataclass
class PixelGaussian:
    """prod_d Norm[x_d; loc_d, e^logvar_d]; loc, logvar (N, C, H, W)."""

    loc: torch.Tensor
    logvar: torch.Tensor

    def mean(self) -> torch.Tensor:
        return self.loc

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_log_density(x, self.loc.to(x.dtype), self.logvar.to(x.dtype)).flatten(1).sum(1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.loc.shape, generator=generator, dtype=self.loc.dtype)
        return self.loc + torch.exp(0.5 * self.logvar) * noise

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        return {"mean": self.loc, "logvar": self.logvar}

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc.double(), torch.exp(self.logvar.double())


def logistic_moments(loc: torch.Tensor, log_scale: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The location clipped to [0, 1] and 3 s^2 + 1 / (12 (L - 1)^2), float64: a discretized logistic's moments."""
    loc, log_scale = loc.double(), log_scale.double()
    return loc.clamp(0.0, 1.0), 3.0 * torch.exp(2.0 * log_scale) + 1.0 / (12.0 * (levels - 1) ** 2)


def discretized_logistic_log_mass(x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, levels: int
                                  ) -> torch.Tensor:
    """log P(k) per element of a logistic(loc, e^log_scale) discretized to x = k / (L - 1), k = 0 .. L - 1: the
    mass of [x - h, x + h], h = 1 / (2 (L - 1)), with bin 0 open below and bin L - 1 open above (the L masses sum
    to 1). With a, b the standardized bin edges, log(sigmoid(b) - sigmoid(a)) = b + log(1 - e^(a - b))
    - softplus(a) - softplus(b): no difference of two near-equal probabilities, whatever the scale."""
    half = 0.5 / (levels - 1)
    inv_scale = torch.exp(-log_scale)
    a, b = (x - loc - half) * inv_scale, (x - loc + half) * inv_scale
    inner = b + torch.log(-torch.expm1(a - b)) - F.softplus(a) - F.softplus(b)
    k = torch.round(x * (levels - 1))
    return torch.where(k <= 0, -F.softplus(-b), torch.where(k >= levels - 1, -F.softplus(a), inner))


EDGE_BLOCK = 16  # bin edges per pass of discretized_logistic_mean: its memory is this many times the parameters'


def discretized_logistic_mean(loc: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """E[x] = sum_k k / (L - 1) P(k) = 1 - mean_j sigmoid((e_j - loc) / s) over the L - 1 inner bin edges
    e_j = (j - 1/2) / (L - 1) (summation by parts); the edges in blocks, so memory stays a few times loc's."""
    edges = (torch.arange(1, levels, dtype=loc.dtype, device=loc.device) - 0.5) / (levels - 1)  # (L - 1,)
    inv_scale = torch.exp(-log_scale)[..., None]
    total = torch.zeros_like(loc)
    for block in edges.split(EDGE_BLOCK):
        total = total + torch.sigmoid((block - loc[..., None]) * inv_scale).sum(-1)
    return 1.0 - total / len(edges)


def discretized_logistic_sample(loc: torch.Tensor, log_scale: torch.Tensor, levels: int,
                                generator: torch.Generator | None) -> torch.Tensor:
    """y = loc + s logit(u), rounded to the nearest level and clamped: exactly the discretized distribution."""
    u = torch.rand(loc.shape, generator=generator, dtype=loc.dtype).clamp(1e-6, 1 - 1e-6)
    y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return torch.round(y * (levels - 1)).clamp(0, levels - 1) / (levels - 1)


@dataclass
class DiscretizedLogistic:
    """A logistic per pixel over the L levels x = k / (L - 1); loc, log_scale (N, C, H, W)."""

    loc: torch.Tensor
    log_scale: torch.Tensor
    levels: int

    def mean(self) -> torch.Tensor:
        return discretized_logistic_mean(self.loc, self.log_scale, self.levels)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        mass = discretized_logistic_log_mass(x, self.loc.to(x.dtype), self.log_scale.to(x.dtype), self.levels)
        return mass.flatten(1).sum(1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return discretized_logistic_sample(self.loc, self.log_scale, self.levels, generator)

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        return {"loc": self.loc, "log_scale": self.log_scale}

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        return logistic_moments(self.loc, self.log_scale, self.levels)


@dataclass
class LogisticMixture:
    """A mixture of K discretized logistics per pixel: logits, loc, log_scale (N, K, C, H, W)."""

    logits: torch.Tensor
    loc: torch.Tensor
    log_scale: torch.Tensor
    levels: int

    def mean(self) -> torch.Tensor:
        weights = torch.softmax(self.logits, 1)
        return (weights * discretized_logistic_mean(self.loc, self.log_scale, self.levels)).sum(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log sum_j pi_j P_j(k) per pixel, in log space, summed over the pixels: (N,)."""
        log_weights = torch.log_softmax(self.logits.to(x.dtype), 1)
        mass = discretized_logistic_log_mass(x[:, None], self.loc.to(x.dtype), self.log_scale.to(x.dtype),
                                             self.levels)
        return torch.logsumexp(log_weights + mass, 1).flatten(1).sum(1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A component per pixel by the Gumbel-max trick, then a draw of that logistic."""
        u = torch.rand(self.logits.shape, generator=generator, dtype=self.logits.dtype).clamp(1e-9, 1 - 1e-9)
        pick = torch.argmax(self.logits - torch.log(-torch.log(u)), 1, keepdim=True)  # (N, 1, C, H, W)
        loc, log_scale = (t.gather(1, pick).squeeze(1) for t in (self.loc, self.log_scale))
        return discretized_logistic_sample(loc, log_scale, self.levels, generator)

    def graph_outputs(self) -> dict[str, torch.Tensor]:
        return {"logits": self.logits, "loc": self.loc, "log_scale": self.log_scale}

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_k pi_k m_k and sum_k pi_k (v_k + m_k^2) - m^2 over the components' moments."""
        weights = torch.softmax(self.logits.double(), 1)
        m, v = logistic_moments(self.loc, self.log_scale, self.levels)
        mean = (weights * m).sum(1)
        return mean, (weights * (v + m**2)).sum(1) - mean**2


class GaussianLikelihood(nn.Module):
    kind = "gaussian"
    params_per_channel = 1

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

    def forward(self, h: torch.Tensor) -> SphericalGaussian:
        return SphericalGaussian(h, self.clamped_log_sigma(), self.mean_activation)


class BernoulliLikelihood(nn.Module):
    kind = "bernoulli"
    params_per_channel = 1

    @property
    def sigma(self) -> None:
        return None

    def forward(self, h: torch.Tensor) -> Bernoulli:
        return Bernoulli(h)


class PixelGaussianLikelihood(nn.Module):
    kind = "pixel-gaussian"
    params_per_channel = 2  # mean, log-variance
    sigma = None

    def __init__(self, logvar_min: float):
        super().__init__()
        self.logvar_min = logvar_min

    def forward(self, h: torch.Tensor) -> PixelGaussian:
        """h (N, 2C, H, W): the means' pre-activations, then the log-variances' (floored softly: floor + softplus)."""
        mean_h, logvar_h = h.chunk(2, dim=1)
        return PixelGaussian(torch.sigmoid(mean_h), self.logvar_min + F.softplus(logvar_h - self.logvar_min))


class LogisticLikelihood(nn.Module):
    kind = "logistic"
    params_per_channel = 2  # location, log-scale
    sigma = None

    def __init__(self, levels: int, log_scale_min: float):
        super().__init__()
        self.levels, self.log_scale_min = levels, log_scale_min

    def forward(self, h: torch.Tensor) -> DiscretizedLogistic:
        """h (N, 2C, H, W): locations (about the [0, 1] pixel range), then log-scales (floored)."""
        loc_h, log_scale_h = h.chunk(2, dim=1)
        return DiscretizedLogistic(loc_h + 0.5, log_scale_h.clamp(min=self.log_scale_min), self.levels)


class LogisticMixtureLikelihood(nn.Module):
    kind = "logistic-mixture"
    sigma = None

    def __init__(self, levels: int, log_scale_min: float, components: int):
        super().__init__()
        self.levels, self.log_scale_min, self.components = levels, log_scale_min, components
        self.params_per_channel = 3 * components  # weight logits, locations, log-scales

    def forward(self, h: torch.Tensor) -> LogisticMixture:
        """h (N, 3KC, H, W) -> logits, loc, log_scale (N, K, C, H, W)."""
        n, _, height, width = h.shape
        logits, loc, log_scale = h.view(n, 3, self.components, -1, height, width).unbind(1)
        return LogisticMixture(logits, loc + 0.5, log_scale.clamp(min=self.log_scale_min), self.levels)


Likelihood = (GaussianLikelihood | BernoulliLikelihood | PixelGaussianLikelihood | LogisticLikelihood
              | LogisticMixtureLikelihood)


def build_likelihood(cfg: ModelConfig, levels: int = 256) -> Likelihood:
    """The likelihood module of cfg.likelihood; `levels`: the data's pixel levels L (the discretized ones)."""
    if cfg.likelihood == "gaussian":
        return GaussianLikelihood(cfg.sigma, cfg.learn_sigma, cfg.sigma_min, cfg.mean_activation)
    if cfg.likelihood == "pixel-gaussian":
        return PixelGaussianLikelihood(cfg.pixel_logvar_min)
    if cfg.likelihood == "logistic":
        return LogisticLikelihood(levels, cfg.log_scale_min)
    if cfg.likelihood == "logistic-mixture":
        return LogisticMixtureLikelihood(levels, cfg.log_scale_min, cfg.mixture_components)
    return BernoulliLikelihood()
