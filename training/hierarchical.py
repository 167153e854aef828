"""A two-level VAE with a learned conditional prior (z2 -> z1 -> x), for better samples (Prince ch. 17,
"hierarchical priors"; Sonderby et al. 2016, Vahdat & Kautz 2020 for deeper versions).

Generative model:  z2 ~ Norm[0, I_D2],  z1 | z2 ~ Norm[m(z2), diag s^2(z2)],  x | z1 ~ the likelihood of f[z1].
Inference model:   q(z1, z2 | x) = Norm[mu1(x), diag var1(x)] Norm[mu2(x), diag var2(x)]  (one encoder trunk).
ELBO = E_q[log Pr(x|z1)] - E_{q(z2|x)} KL[q(z1|x) || Pr(z1|z2)] - KL[q(z2|x) || Norm(0, I)]
with one reparameterized draw of (z1, z2) and both KLs in closed form given the draw of z2.

The decoder and likelihood are those of the flat VAE (training/models.py), so /decode takes z1.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import ModelConfig
from training.distributions import DiagonalGaussian, standard_normal_log_density
from training.likelihoods import build_likelihood
from training.models import ConvDecoder, ConvEncoder, ImageShape, MLPDecoder, MLPEncoder, _mlp


def gaussian_kl(q: DiagonalGaussian, p_mu: torch.Tensor, p_logvar: torch.Tensor) -> torch.Tensor:
    """KL[Norm(q.mu, diag e^q.logvar) || Norm(p_mu, diag e^p_logvar)] summed over D: (N,).
    0.5 sum(p_logvar - q_logvar + (e^q_logvar + (q_mu - p_mu)^2) / e^p_logvar - 1)."""
    return 0.5 * (p_logvar - q.logvar + (q.logvar.exp() + (q.mu - p_mu) ** 2) * torch.exp(-p_logvar) - 1).sum(-1)


class TwoLevelVAE(nn.Module):
    hierarchical = True

    def __init__(self, cfg: ModelConfig, shape: ImageShape):
        super().__init__()
        self.cfg, self.shape = cfg, shape
        d1, d2 = cfg.latent_dim, cfg.latent_dim2
        if cfg.arch == "mlp":
            self.encoder: nn.Module = MLPEncoder(shape, cfg.hidden, d1 + d2)  # -> (mu1, mu2, logvar1, logvar2)
            self.decoder: nn.Module = MLPDecoder(shape, cfg.hidden, d1)
        else:
            self.encoder = ConvEncoder(shape, cfg.conv_channels, d1 + d2)
            self.decoder = ConvDecoder(shape, cfg.conv_channels, d1)
        self.prior_net = _mlp([d2, *cfg.prior_hidden, 2 * d1])  # z2 -> (m, log s^2) of Pr(z1|z2)
        self.likelihood = build_likelihood(cfg)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def latent_dim2(self) -> int:
        return self.cfg.latent_dim2

    def _clamp(self, logvar: torch.Tensor) -> torch.Tensor:
        return logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max)

    def encode_levels(self, x: torch.Tensor) -> tuple[DiagonalGaussian, DiagonalGaussian]:
        """q(z1|x), q(z2|x) for x (N, C, H, W)."""
        d1 = self.cfg.latent_dim
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (N, D1 + D2) each
        return (DiagonalGaussian(mu[:, :d1], self._clamp(logvar[:, :d1])),
                DiagonalGaussian(mu[:, d1:], self._clamp(logvar[:, d1:])))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z1|x): the level the decoder reads."""
        return self.encode_levels(x)[0]

    def prior(self, z2: torch.Tensor) -> DiagonalGaussian:
        """The learned conditional prior Pr(z1|z2): (N, D2) -> Norm over (N, D1)."""
        m, logvar = self.prior_net(z2).chunk(2, dim=1)
        return DiagonalGaussian(m, self._clamp(logvar))

    def decode_logits(self, z1: torch.Tensor) -> torch.Tensor:
        return self.decoder(z1)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder(z1))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, noise: bool = False) -> torch.Tensor:
        """Ancestral sampling through both levels: z2 ~ Norm[0, I], z1 ~ Pr(z1|z2), then f[z1] (or x)."""
        z2 = torch.randn((n, self.latent_dim2), generator=generator)
        z1 = self.prior(z2).rsample(generator)
        h = self.decode_logits(z1)
        return self.likelihood.sample(h, generator) if noise else self.likelihood.mean(h)

    def kl_terms(self, q1: DiagonalGaussian, q2: DiagonalGaussian, z2: torch.Tensor) -> torch.Tensor:
        """KL[q(z1|x) || Pr(z1|z2)] + KL[q(z2|x) || Norm(0, I)] at the draw z2: (N,)."""
        p1 = self.prior(z2)
        return gaussian_kl(q1, p1.mu, p1.logvar) + q2.kl()

    def log_joint_minus_q(self, x: torch.Tensor, q1: DiagonalGaussian, q2: DiagonalGaussian, z1: torch.Tensor,
                          z2: torch.Tensor) -> torch.Tensor:
        """log Pr(x|z1) + log Pr(z1|z2) + log Pr(z2) - log q(z1|x) - log q(z2|x), in the dtype of x.
        z1 (M, N, D1), z2 (M, N, D2) for M draws per image -> (M, N)."""
        m, n = z1.shape[:2]
        dtype = next(self.parameters()).dtype  # the networks' dtype; the log-densities stay in x's
        p1 = self.prior(z2.flatten(0, 1).to(dtype))
        p1 = DiagonalGaussian(p1.mu.to(x.dtype).view(m, n, -1), p1.logvar.to(x.dtype).view(m, n, -1))
        h = self.decode_logits(z1.flatten(0, 1).to(dtype))
        log_px = self.likelihood.log_prob(x.expand(m, *x.shape).flatten(0, 1), h).view(m, n)
        return (log_px + p1.log_prob(z1) + standard_normal_log_density(z2).sum(-1)
                - q1.log_prob(z1) - q2.log_prob(z2))
