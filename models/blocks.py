"""Building blocks shared by the first-stage encoders and decoder (all per-frame 2D unless named)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def norm2d(channels: int) -> nn.Module:
    # GroupNorm rather than MOSO's BatchNorm: it behaves the same in train and eval mode and does
    # not couple the samples of a (small, per-GPU) batch, which keeps resume and DDP exact.
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1),
            norm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualStack(nn.Sequential):
    def __init__(self, channels: int, depth: int) -> None:
        super().__init__(*[ResidualBlock(channels) for _ in range(depth)], norm2d(channels), nn.GELU())


class DownStack(nn.Module):
    """``n`` times (stride-2 5x5 conv, 3x3 conv): the per-frame stack of MOSO's encoders."""

    def __init__(self, in_channels: int, channels: int, n_down: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        for _ in range(n_down):
            layers += [
                norm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 5, stride=2, padding=2),
                norm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1),
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpStack(nn.Module):
    """``n`` times (stride-2 4x4 transposed conv, 3x3 conv)."""

    def __init__(self, channels: int, n_up: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_up):
            layers += [
                norm2d(channels), nn.GELU(), nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
                norm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1),
            ]
        self.net = nn.Sequential(*layers) if layers else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resample_stack(channels: int, from_down: int, to_down: int) -> nn.Module:
    """Maps features at 1/2^from_down of the frame size to 1/2^to_down."""
    if from_down > to_down:
        return UpStack(channels, from_down - to_down)
    if from_down < to_down:
        return DownStack(channels, channels, to_down - from_down)
    return nn.Identity()


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention over time at every spatial location (pre-norm, residual, MLP).

    Input and output ``[B, C, T, H, W]``; a learned position embedding tells frames apart unless
    ``position`` is off (MOSO has none: with it, motion codes can degenerate into frame-index codes).
    """

    def __init__(self, channels: int, heads: int, max_frames: int, position: bool = True) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by attention heads ({heads})")
        self.heads = heads
        self.max_frames = max_frames
        self.pos = nn.Parameter(torch.zeros(max_frames, channels)) if position else None
        if self.pos is not None:
            nn.init.normal_(self.pos, std=0.02)
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t > self.max_frames:
            raise ValueError(f"clip has {t} frames but the motion encoder was built for at most {self.max_frames}")
        seq = rearrange(x, "b c t h w -> (b h w) t c")
        if self.pos is not None:
            seq = seq + self.pos[:t]
        q, k, v = rearrange(self.qkv(self.norm1(seq)), "n t (three g d) -> three n g t d", three=3, g=self.heads)
        attn = F.scaled_dot_product_attention(q, k, v)
        seq = seq + self.proj(rearrange(attn, "n g t d -> n t (g d)"))
        seq = seq + self.mlp(self.norm2(seq))
        return rearrange(seq, "(b h w) t c -> b c t h w", b=b, h=h, w=w)
