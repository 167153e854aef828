"""The networks inside a VAE: encoders x -> a vector of posterior parameters, decoders z -> the pre-activation
h (N, C, H, W) that a likelihood reads. Two architectures, chosen by ModelConfig.arch:
  - mlp:  flatten -> Linear/SiLU stack; the decoder mirrors it. hidden=() is linear.
  - conv: stride-2 4x4 convolutions halving H and W per stage -> Linear; the decoder mirrors it with
          transposed convolutions.
  - resnet: conv with residual blocks (3x3, SiLU) after each encoder stage and before each decoder stage.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import ModelConfig

ImageShape = tuple[int, int, int]  # (C, H, W)


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers of the given widths with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, shape: ImageShape, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        self.net = mlp([math.prod(shape), *hidden, out_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, out_dim)
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, shape: ImageShape, hidden: tuple[int, ...], latent_dim: int):
        super().__init__()
        self.shape = shape
        self.net = mlp([latent_dim, *reversed(hidden), math.prod(shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, C, H, W)
        return self.net(z).view(-1, *self.shape)


class ResidualBlock(nn.Module):
    """x + conv(SiLU(conv(SiLU(x)))), 3x3 convolutions keeping the channels and the size (He et al. 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                 nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions, each followed by `blocks` residual blocks (0: the plain conv arch)."""

    def __init__(self, shape: ImageShape, channels: tuple[int, ...], out_dim: int, blocks: int = 0):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip((c, *channels[:-1]), channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
            layers += [ResidualBlock(c_out) for _ in range(blocks)]
        scale = 2 ** len(channels)
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1] * (h // scale) * (w // scale), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, out_dim)
        return self.head(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """The encoder mirrored: `blocks` residual blocks before each stride-2 transposed convolution."""

    def __init__(self, shape: ImageShape, channels: tuple[int, ...], latent_dim: int, blocks: int = 0):
        super().__init__()
        c, h, w = shape
        scale = 2 ** len(channels)
        self.start = (channels[-1], h // scale, w // scale)
        self.head = nn.Linear(latent_dim, math.prod(self.start))
        layers: list[nn.Module] = []
        outs = (*reversed(channels[:-1]), c)
        for c_in, c_out in zip(reversed(channels), outs, strict=True):
            layers += [ResidualBlock(c_in) for _ in range(blocks)]
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, C, H, W)
        return self.deconv(self.head(z).view(-1, *self.start))


def build_networks(cfg: ModelConfig, shape: ImageShape, encoder_out: int, decoder_in: int, params_per_channel: int
                   ) -> tuple[nn.Module, nn.Module]:
    """The encoder (x (N, C, H, W) -> encoder_out numbers) and decoder (decoder_in latents -> h, the likelihood's
    params_per_channel maps per image channel: (N, P C, H, W)) of cfg.arch."""
    c, h, w = shape
    out_shape = (params_per_channel * c, h, w)
    if cfg.arch == "mlp":
        return MLPEncoder(shape, cfg.hidden, encoder_out), MLPDecoder(out_shape, cfg.hidden, decoder_in)
    scale = 2 ** len(cfg.conv_channels)
    if h % scale or w % scale:
        raise ValueError(f"{cfg.arch} arch needs H and W divisible by {scale}, image is {shape}")
    blocks = cfg.res_blocks if cfg.arch == "resnet" else 0
    return (ConvEncoder(shape, cfg.conv_channels, encoder_out, blocks),
            ConvDecoder(out_shape, cfg.conv_channels, decoder_in, blocks))
