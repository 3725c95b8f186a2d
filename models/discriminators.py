"""PatchGAN discriminators for the first stage's GAN fine-tune: per-frame 2D and per-clip 3D."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from models import register_model


def _patchgan_layers(conv: type, norm: type, in_channels: int, channels: int, n_layers: int,
                     kernel, stride_down, stride_keep, padding) -> nn.Sequential:
    """The pix2pix PatchGAN recipe: strided convs doubling width, one unstrided, a 1-channel head."""
    layers: list[nn.Module] = [conv(in_channels, channels, kernel, stride_down, padding), nn.LeakyReLU(0.2)]
    width = channels
    for i in range(1, n_layers + 1):
        prev, width = width, channels * min(2**i, 8)
        stride = stride_down if i < n_layers else stride_keep
        layers += [conv(prev, width, kernel, stride, padding, bias=False), norm(width), nn.LeakyReLU(0.2)]
    layers.append(conv(width, 1, kernel, stride_keep, padding))
    return nn.Sequential(*layers)


def _group_norm(channels: int) -> nn.Module:
    # GroupNorm instead of BatchNorm: real and fake batches pass separately through D, and batch
    # statistics would let D tell them apart by the batch rather than by the samples.
    return nn.GroupNorm(min(32, channels // 4), channels)


@register_model("patchgan2d")
class FrameDiscriminator(nn.Module):
    """Scores every frame of ``[B, C, T, H, W]`` with a 2D PatchGAN -> logits ``[B*T, 1, h, w]``."""

    def __init__(self, channels: int = 64, n_layers: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        self.net = _patchgan_layers(nn.Conv2d, _group_norm, in_channels, channels, n_layers, 4, 2, 1, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(rearrange(video, "b c t h w -> (b t) c h w"))


@register_model("patchgan3d")
class ClipDiscriminator(nn.Module):
    """Scores space-time patches of ``[B, C, T, H, W]`` with a 3D PatchGAN (sees motion, not only frames)."""

    def __init__(self, channels: int = 64, n_layers: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        self.net = _patchgan_layers(nn.Conv3d, _group_norm, in_channels, channels, n_layers,
                                    (3, 4, 4), (1, 2, 2), 1, (1, 1, 1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)
