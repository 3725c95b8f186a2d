"""Blocks shared by the second-stage denoisers.

Every block works on 4D ``[N, C, H, W]`` or 5D ``[N, C, T, H, W]`` feature maps (2D or 3D
convolutions, picked by the length of the kernel), so the per-frame RSVP-S1 ablation and the 3D
variants share one implementation. Resampling is spatial only: time is never strided, so the
motion stream keeps its T frames at every level.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models.fast_conv import Conv3d


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    # gcd keeps any width legal (tiny test nets included); 32 groups for the usual multiples of 32.
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def conv_nd(in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int] | int = 1) -> nn.Module:
    """``Conv2d`` for a 2-long kernel, ``Conv3d`` for a 3-long one (:mod:`models.fast_conv`:
    oneDNN on the CPU at every batch size); 'same' padding."""
    kernel = tuple(int(k) for k in kernel)
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"convolution kernels must be odd, got {kernel}")
    padding = tuple(k // 2 for k in kernel)
    if len(kernel) == 2:
        return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    if len(kernel) == 3:
        return Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    raise ValueError(f"kernel must have 2 or 3 entries, got {kernel}")


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[N] -> [N, dim]`` float32 cos/sin features of (possibly fractional) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """Timestep -> vector: sinusoidal features, then a 2-layer MLP."""

    def __init__(self, freq_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


def fourier_positions(frames: int, height: int, width: int, num_freqs: int, temporal: bool) -> torch.Tensor:
    """``[frames*height*width, 6*num_freqs]`` sin/cos features of token centres in (t, y, x) order.

    Coordinates are normalised to [0, 1] per axis, so a 16x16 scene token and an 8x8 motion token
    covering the same image region get nearby features: that is what lets attention line up
    streams of different resolutions. Non-temporal (one-map) streams get zero time features,
    which no frame of a temporal stream has (cos^2 + sin^2 = 1 there).
    """
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float64)

    def axis(n: int) -> torch.Tensor:
        u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        return torch.cat([torch.sin(u[:, None] * freqs), torch.cos(u[:, None] * freqs)], dim=1)

    ft = axis(frames) if temporal else torch.zeros(frames, 2 * num_freqs, dtype=torch.float64)
    fy, fx = axis(height), axis(width)
    grid = torch.cat([
        ft[:, None, None].expand(frames, height, width, -1),
        fy[None, :, None].expand(frames, height, width, -1),
        fx[None, None, :].expand(frames, height, width, -1),
    ], dim=-1)
    return rearrange(grid, "t h w p -> (t h w) p").float()


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a timestep embedding in between; residual.

    ``scale_shift`` (FiLM, as in ADM): ``norm(h) * (1 + scale) + shift``; otherwise the embedding
    is added before the second norm. ``emb_dim=0`` builds a block without an embedding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], emb_dim: int,
                 dropout: float = 0.0, scale_shift: bool = True, norm_groups: int = 32) -> None:
        super().__init__()
        self.dims = len(kernel)
        self.scale_shift = scale_shift and emb_dim > 0
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = conv_nd(in_channels, out_channels, kernel)
        self.emb = nn.Linear(emb_dim, out_channels * (2 if self.scale_shift else 1)) if emb_dim > 0 else None
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(conv_nd(out_channels, out_channels, kernel))
        same = in_channels == out_channels
        self.skip = nn.Identity() if same else conv_nd(in_channels, out_channels, (1,) * self.dims)

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            if emb is None:
                raise ValueError("this block was built with a timestep embedding; pass emb")
            e = self.emb(F.silu(emb)).view(emb.shape[0], -1, *(1,) * self.dims)
            if self.scale_shift:
                scale, shift = e.chunk(2, dim=1)
                h = self.norm2(h) * (1 + scale) + shift
            else:
                h = self.norm2(h + e)
        else:
            h = self.norm2(h)
        return self.skip(x) + self.conv2(self.dropout(F.silu(h)))


class Downsample(nn.Module):
    """Strided conv halving H and W only (stride (1, 2, 2) for 3D maps)."""

    def __init__(self, channels: int, kernel: Sequence[int]) -> None:
        super().__init__()
        self.conv = conv_nd(channels, channels, kernel, stride=(1,) * (len(kernel) - 2) + (2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x in H and W only, then a conv."""

    def __init__(self, channels: int, kernel: Sequence[int]) -> None:
        super().__init__()
        self.scale = (1.0,) * (len(kernel) - 2) + (2.0, 2.0)
        self.conv = conv_nd(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    return rearrange(x, "b n (g d) -> b g n d", d=head_dim)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b g n d -> b n (g d)")


def heads_for(channels: int, head_dim: int) -> int:
    if channels % head_dim:
        raise ValueError(f"attention width {channels} is not divisible by attn_head_dim={head_dim}")
    return channels // head_dim


class JointAttention(nn.Module):
    """Self-attention over the concatenated tokens of several streams (residual, pre-norm).

    Each stream keeps its own norm and q/kv/out projections (the streams carry different
    semantics) but all tokens share one softmax, so every token can read every stream.
    ``query_streams`` restricts which streams are updated (their tokens make queries); the
    others only provide keys/values -- used where a stream's features are not needed afterwards.
    ``positions`` holds each stream's fixed token position features (see :func:`fourier_positions`);
    a learned linear map adds them to the normalised tokens.

    ``forward(h)`` takes and returns a dict stream -> ``[B, C, ...]`` feature map.
    """

    def __init__(self, channels: int, positions: Mapping[str, torch.Tensor], head_dim: int = 64,
                 query_streams: Optional[Sequence[str]] = None, norm_groups: int = 32) -> None:
        super().__init__()
        self.streams = tuple(positions)
        self.query_streams = tuple(query_streams) if query_streams is not None else self.streams
        unknown = set(self.query_streams) - set(self.streams)
        if unknown or not self.query_streams:
            raise ValueError(f"query streams {self.query_streams} must be a non-empty subset of {self.streams}")
        self.head_dim = head_dim
        heads_for(channels, head_dim)
        for name, pos in positions.items():
            self.register_buffer(f"pos_{name}", pos, persistent=False)
        pos_dim = next(iter(positions.values())).shape[1]
        self.pos_proj = nn.Linear(pos_dim, channels)
        self.norm = nn.ModuleDict({s: group_norm(channels, norm_groups) for s in self.streams})
        self.to_q = nn.ModuleDict({s: nn.Linear(channels, channels) for s in self.query_streams})
        self.to_kv = nn.ModuleDict({s: nn.Linear(channels, 2 * channels) for s in self.streams})
        self.out = nn.ModuleDict({s: zero_(nn.Linear(channels, channels)) for s in self.query_streams})

    def tokens(self, name: str, x: torch.Tensor) -> torch.Tensor:
        pos = getattr(self, f"pos_{name}")
        seq = rearrange(self.norm[name](x), "b c ... -> b (...) c")
        if seq.shape[1] != pos.shape[0]:
            raise ValueError(f"stream '{name}' has {seq.shape[1]} tokens here, the net was built for {pos.shape[0]}")
        return seq + self.pos_proj(pos.to(seq.dtype))

    def forward(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seqs = {s: self.tokens(s, h[s]) for s in self.streams}
        q = torch.cat([self.to_q[s](seqs[s]) for s in self.query_streams], dim=1)
        k, v = torch.cat([self.to_kv[s](seqs[s]) for s in self.streams], dim=1).chunk(2, dim=-1)
        attn = F.scaled_dot_product_attention(*(split_heads(z, self.head_dim) for z in (q, k, v)))
        sizes = [seqs[s].shape[1] for s in self.query_streams]
        out = dict(h)
        for s, part in zip(self.query_streams, merge_heads(attn).split(sizes, dim=1)):
            x = h[s]
            out[s] = x + self.out[s](part).transpose(1, 2).unflatten(2, x.shape[2:])
        return out


class CrossAttention(nn.Module):
    """Tokens of one feature map attend to a context sequence ``[B, N, context_dim]`` (residual)."""

    def __init__(self, channels: int, context_dim: int, head_dim: int = 64, norm_groups: int = 32) -> None:
        super().__init__()
        heads_for(channels, head_dim)
        self.head_dim = head_dim
        self.norm = group_norm(channels, norm_groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_dim, 2 * channels)
        self.out = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.to_q(rearrange(self.norm(x), "b c ... -> b (...) c"))
        k, v = self.to_kv(context).chunk(2, dim=-1)
        attn = F.scaled_dot_product_attention(*(split_heads(z, self.head_dim) for z in (q, k, v)))
        return x + self.out(merge_heads(attn)).transpose(1, 2).unflatten(2, x.shape[2:])
