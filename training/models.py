"""The VAE: encoder g[x, theta] -> q(z|x), decoder f[z, phi] -> the likelihood's mean, prior Norm[0, I].

Two architectures share one interface, chosen by ModelConfig.arch:
  - mlp:  flatten -> Linear/SiLU stack -> (mu, logvar); the decoder mirrors it. hidden=() is linear.
  - conv: stride-2 4x4 convolutions halving H and W per stage -> Linear; the decoder mirrors it with
          transposed convolutions.
The decoder returns the pre-activation h; the likelihood turns it into its mean (sigmoid).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import ModelConfig
from training.distributions import DiagonalGaussian
from training.likelihoods import build_likelihood

ImageShape = tuple[int, int, int]  # (C, H, W)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, shape: ImageShape, hidden: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.net = _mlp([math.prod(shape), *hidden, 2 * latent_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (N, 2D)


class MLPDecoder(nn.Module):
    def __init__(self, shape: ImageShape, hidden: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.shape = shape
        self.net = _mlp([latent_dim, *reversed(hidden), math.prod(shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)  # (N, C, H, W)


class ConvEncoder(nn.Module):
    def __init__(self, shape: ImageShape, channels: tuple[int, ...], latent_dim: int):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip((c, *channels[:-1]), channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        scale = 2 ** len(channels)
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1] * (h // scale) * (w // scale), 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    def __init__(self, shape: ImageShape, channels: tuple[int, ...], latent_dim: int):
        super().__init__()
        c, h, w = shape
        scale = 2 ** len(channels)
        self.start = (channels[-1], h // scale, w // scale)
        self.head = nn.Linear(latent_dim, math.prod(self.start))
        layers: list[nn.Module] = []
        outs = (*reversed(channels[:-1]), c)
        for c_in, c_out in zip(reversed(channels), outs, strict=True):
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.head(z).view(-1, *self.start))


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig, shape: ImageShape):
        super().__init__()
        self.cfg, self.shape = cfg, shape
        if cfg.arch == "mlp":
            self.encoder: nn.Module = MLPEncoder(shape, cfg.hidden, cfg.latent_dim)
            self.decoder: nn.Module = MLPDecoder(shape, cfg.hidden, cfg.latent_dim)
        else:
            scale = 2 ** len(cfg.conv_channels)
            if shape[1] % scale or shape[2] % scale:
                raise ValueError(f"conv arch needs H and W divisible by {scale}, image is {shape}")
            self.encoder = ConvEncoder(shape, cfg.conv_channels, cfg.latent_dim)
            self.decoder = ConvDecoder(shape, cfg.conv_channels, cfg.latent_dim)
        self.likelihood = build_likelihood(cfg)

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for x (N, C, H, W) in [0, 1]; log-variance clamped so exp() stays finite."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (N, D) each
        return DiagonalGaussian(mu, logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max))

    def reparameterize(self, q: DiagonalGaussian, generator: torch.Generator | None = None) -> torch.Tensor:
        return q.rsample(generator)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder pre-activation h = f'[z] (N, C, H, W); the likelihood reads it."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean f[z, phi] in (0, 1): (N, C, H, W)."""
        return self.likelihood.mean(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[DiagonalGaussian, torch.Tensor, torch.Tensor]:
        q = self.encode(x)
        z = self.reparameterize(q)
        return q, z, self.decode_logits(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, noise: bool = False) -> torch.Tensor:
        """Ancestral sampling: z ~ Norm[0, I], then the mean f[z] (or x ~ Pr(x|z) with noise=True)."""
        z = torch.randn((n, self.latent_dim), generator=generator)
        h = self.decode_logits(z)
        return self.likelihood.sample(h, generator) if noise else self.likelihood.mean(h)


def build_model(cfg: ModelConfig, shape: ImageShape) -> nn.Module:
    """The flat VAE, or the two-level one (cfg.hierarchy = "two-level")."""
    if cfg.hierarchy == "two-level":
        from training.hierarchical import TwoLevelVAE  # imports this module: keep the cycle out of import time

        return TwoLevelVAE(cfg, shape)
    return VAE(cfg, shape)
