"""LVDM's video autoencoder (He et al. 2022), written from the paper's description and its configs.

A light 3D-convolution encoder maps a clip ``[B, 3, T, H, W]`` in [-1, 1] to a continuous latent
``[B, E, T/ft, H/fs, W/fs]`` (LVDM at 256x256x16: ``ft = 4``, ``fs = 8``, ``E = 4``: ``[4, 4, 32, 32]``);
a mirrored decoder maps it back. Every convolution pads by repeating the border values in time,
height and width (LVDM's ``padding_type: replicate``), so the first and last frames are not
treated as if black frames surrounded them.

The encoder has ``log2(max(factors))`` stages, each a residual block and a stride-2 convolution
along the axes that still need halving; the width doubles per stage up to ``max_mult`` times
``channels``. The decoder runs the stages backwards with nearest upsampling. Being fully
convolutional, both take any clip length that ``ft`` divides (the second stage encodes the
observed frames and the future clip separately, see :mod:`models.lvdm_predictor`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from models.fast_conv import Conv3d
from models.unets.config import coerce_config
from models.unets.layers import group_norm


@dataclass
class LVDMAutoencoderConfig:
    frames: int = 16  # T of the clips it is trained on
    resolution: int = 256  # H = W
    channels: int = 32  # width of the first stage (LVDM: n_hiddens 32)
    max_mult: int = 4  # the width doubles per stage up to channels * max_mult
    downsample: list[int] = field(default_factory=lambda: [4, 8, 8])  # (t, h, w) factors, powers of 2 (LVDM)
    res_blocks: int = 1  # residual blocks per stage
    embed_dim: int = 4  # E, latent channels (LVDM: 4)
    norm_groups: int = 32

    def __post_init__(self) -> None:
        factors = [int(f) for f in self.downsample]
        if len(factors) != 3 or any(f < 1 or f & (f - 1) for f in factors):
            raise ValueError(f"downsample must be three powers of 2 (t, h, w); got {list(self.downsample)}")
        if min(self.frames, self.resolution, self.channels, self.max_mult, self.embed_dim) < 1 or self.res_blocks < 0:
            raise ValueError(f"LVDM autoencoder sizes must be positive; got {self}")
        if self.frames % factors[0] or self.resolution % factors[1] or self.resolution % factors[2]:
            raise ValueError(f"clips of {self.frames}x{self.resolution}x{self.resolution} are not divisible by the "
                             f"downsampling factors {factors}")

    @property
    def stages(self) -> int:
        return int(math.log2(max(self.downsample)))


def conv3d(cin: int, cout: int, kernel: int = 3, stride: tuple[int, int, int] | int = 1) -> nn.Conv3d:
    """A 3D convolution padded by repeating the border (replicate) in t, h and w (``models.fast_conv``:
    oneDNN on the CPU at every batch size)."""
    return Conv3d(cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="replicate")


class ResBlock3d(nn.Module):
    """GroupNorm-SiLU-conv twice, residual (replicate padding)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(group_norm(cin, groups), nn.SiLU(), conv3d(cin, cout),
                                  group_norm(cout, groups), nn.SiLU(), conv3d(cout, cout))
        self.skip = nn.Identity() if cin == cout else Conv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def stage_strides(factors: list[int], stages: int) -> list[tuple[int, int, int]]:
    """Per stage, 2 along the axes not yet downsampled enough, 1 elsewhere."""
    return [tuple(2 if (1 << i) < f else 1 for f in factors) for i in range(stages)]


class LVDMAutoencoder(nn.Module):
    """``encode(clip) -> {"codes": [B, E, T', H', W']}``, ``decode(codes) -> clip``, ``forward = decode(encode)``."""

    def __init__(self, cfg: LVDMAutoencoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else LVDMAutoencoderConfig(), LVDMAutoencoderConfig)
        self.cfg = cfg
        self.frames, self.resolution = cfg.frames, cfg.resolution
        self.factors = tuple(int(f) for f in cfg.downsample)
        strides = stage_strides(list(self.factors), cfg.stages)
        widths = [cfg.channels * min(2 ** i, cfg.max_mult) for i in range(cfg.stages + 1)]
        g = cfg.norm_groups

        enc: list[nn.Module] = [conv3d(3, widths[0])]
        for i, stride in enumerate(strides):
            enc += [ResBlock3d(widths[i], widths[i], g) for _ in range(cfg.res_blocks)]
            enc.append(conv3d(widths[i], widths[i + 1], stride=stride))
        enc += [ResBlock3d(widths[-1], widths[-1], g), group_norm(widths[-1], g), nn.SiLU(),
                Conv3d(widths[-1], cfg.embed_dim, 1)]
        self.encoder = nn.Sequential(*enc)

        self.dec_in = nn.Sequential(conv3d(cfg.embed_dim, widths[-1]), ResBlock3d(widths[-1], widths[-1], g))
        self.up_strides = list(reversed(strides))
        self.up_convs = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(cfg.stages)):
            self.up_convs.append(conv3d(widths[i + 1], widths[i]))
            self.up_blocks.append(nn.Sequential(*[ResBlock3d(widths[i], widths[i], g) for _ in range(cfg.res_blocks)]))
        self.dec_out = nn.Sequential(group_norm(widths[0], g), nn.SiLU(), conv3d(widths[0], 3))

    def latent_shape(self, frames: int | None = None) -> tuple[int, int, int, int]:
        """``(E, T', H', W')`` of a clip of ``frames`` frames (default: the training clip length)."""
        frames = self.frames if frames is None else frames
        ft, fh, fw = self.factors
        return (self.cfg.embed_dim, frames // ft, self.resolution // fh, self.resolution // fw)

    def encode_latent(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` -> ``[B, E, T/ft, H/fs, W/fs]`` for any ``T`` that ``ft`` divides."""
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"clips are [B, 3, T, H, W]; got shape {tuple(clip.shape)}")
        ft, fh, fw = self.factors
        if clip.shape[2] % ft or clip.shape[3] % fh or clip.shape[4] % fw:
            raise ValueError(f"a clip of {tuple(clip.shape[2:])} (t, h, w) is not divisible by the factors {self.factors}")
        return self.encoder(clip)  # [B, E, T', H', W']

    def encode(self, clip: torch.Tensor, **context: Any) -> dict[str, torch.Tensor]:
        return {"codes": self.encode_latent(clip)}

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """``[B, E, T', H', W']`` -> ``[B, 3, T' ft, H' fs, W' fs]`` in [-1, 1] (tanh)."""
        if codes.dim() != 5 or codes.shape[1] != self.cfg.embed_dim:
            raise ValueError(f"latents are [B, {self.cfg.embed_dim}, T', H', W']; got shape {tuple(codes.shape)}")
        h = self.dec_in(codes)
        for stride, conv, blocks in zip(self.up_strides, self.up_convs, self.up_blocks):
            h = blocks(conv(F.interpolate(h, scale_factor=tuple(float(s) for s in stride), mode="nearest")))
        return torch.tanh(self.dec_out(h))  # [B, 3, T, H, W]

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode_latent(clip))
