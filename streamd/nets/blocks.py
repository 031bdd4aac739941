"""Small convolutional building blocks shared by the SDN networks."""

from __future__ import annotations

import torch
from torch import nn

LEAKY_SLOPE = 0.2


class ConvAct(nn.Sequential):
    """3x3 convolution (stride 1 or 2) followed by a leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )


class UpConvAct(nn.Sequential):
    """Nearest-neighbour x2 upsampling, then a 3x3 convolution and a leaky ReLU (no checkerboard)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a scaled identity shortcut (no normalization: restore needs absolute levels)."""

    def __init__(self, channels: int, residual_scale: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        )
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


def downsampler(width: int, latent_channels: int) -> nn.Sequential:
    """Image (3, S, S) -> feature map (latent_channels, S/4, S/4)."""
    return nn.Sequential(
        ConvAct(3, width),
        ConvAct(width, 2 * width, stride=2),
        ConvAct(2 * width, latent_channels, stride=2),
    )


def upsampler(width: int, latent_channels: int) -> nn.Sequential:
    """Feature map (latent_channels, S/4, S/4) -> 3-channel residual image (unbounded) at (S, S)."""
    return nn.Sequential(
        UpConvAct(latent_channels, 2 * width),
        UpConvAct(2 * width, width),
        nn.Conv2d(width, 3, kernel_size=3, padding=1),
    )
