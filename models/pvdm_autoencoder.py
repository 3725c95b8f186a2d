"""PVDM's projected latent autoencoder (Yu et al., CVPR 2023), written from the paper's description.

A clip ``[B, 3, T, H, W]`` in [-1, 1] becomes features ``u`` ``[B, C, S, H', W']`` (``S = T``,
``H' = H / p``, ``W' = W / p`` for patch size ``p``): a stem (a linear embedding of ``p x p`` patches,
as PVDM's TimeSformer, or a per-frame strided conv stack) and ``depth`` space-time transformer blocks
with divided attention (over time at each patch, then over the patches of each frame).

Three small transformers then summarise ``u`` along one axis each: every line of features along
that axis is a sequence, a learned summary token is prepended, learned positions are added, and
the summary token's output is the plane's feature at that line. A 1x1 conv maps each plane to
``embed_dim`` channels, then tanh bounds it:

- ``hw`` ``[B, E, H', W']``: time projected out (what does not move),
- ``tw`` ``[B, E, S, W']``: height projected out,
- ``th`` ``[B, E, S, H']``: width projected out.

Latent layout (:class:`PlaneLayout`): ``[B, E, H'W' + S W' + S H']``, each plane flattened row-major
(``b e a b -> b e (a b)``) and concatenated in the order hw, tw, th (PVDM's order). Decoding maps
each plane back to ``C`` channels with a 1x1 conv, broadcasts it along its missing axis, sums the
three into ``[B, C, S, H', W']``, and runs ``decoder_depth`` space-time blocks and the stem's mirror
(patch un-embedding or a per-frame upsampling conv stack) with a final tanh.

Every size comes from :class:`PVDMAutoencoderConfig` (PVDM's code fixes 16 frames and 32x32 planes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.blocks import DownStack, UpStack, norm2d
from models.unets.config import coerce_config

PLANES = ("hw", "tw", "th")
STEMS = ("patch", "conv")


@dataclass
class PVDMAutoencoderConfig:
    frames: int = 16  # T; the feature grid keeps every frame (S = T)
    resolution: int = 256  # frame height H
    width: int = 0  # frame width W; 0 = square (resolution)
    patch_size: int = 8  # p: the planes are H/p and W/p wide (PVDM: 8 at 256x256 -> 32x32)
    # patch: linear embedding of p x p patches and its mirror (PVDM's TimeSformer);
    # conv: per-frame stride-2 conv stack (log2 p of them) and an upsampling one (p a power of 2)
    stem: str = "patch"
    dim: int = 384  # C, the width of u and of every transformer (PVDM: 384)
    heads: int = 8  # attention heads of the space-time blocks
    depth: int = 8  # encoder space-time blocks (PVDM: 8)
    decoder_depth: int = 8  # decoder space-time blocks (PVDM: 8)
    mlp_ratio: float = 4.0  # MLP hidden width / dim in the space-time blocks
    proj_depth: int = 4  # blocks of each axis-projection transformer (PVDM: 4)
    proj_heads: int = 4  # (PVDM: 4)
    proj_mlp_dim: int = 512  # (PVDM: 512)
    embed_dim: int = 4  # E, latent channels per plane (PVDM: 4)
    checkpointing: bool = False  # activation checkpointing of the space-time blocks in training

    def __post_init__(self) -> None:
        sizes = {k: getattr(self, k) for k in ("frames", "resolution", "patch_size", "dim", "heads", "proj_heads",
                                                 "proj_mlp_dim", "embed_dim")}
        bad = {k: v for k, v in sizes.items() if int(v) < 1}
        if bad or min(self.depth, self.decoder_depth, self.proj_depth, self.width) < 0 or self.mlp_ratio <= 0:
            raise ValueError(f"PVDM autoencoder sizes must be positive (depths and width >= 0); got {self}")
        if self.stem not in STEMS:
            raise ValueError(f"model.pvdm.stem must be one of {', '.join(STEMS)}; got {self.stem!r}")
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ValueError(f"the conv stem halves the frames log2(patch_size) times: patch_size must be a "
                             f"power of 2; got {self.patch_size}")
        for name, size in (("resolution", self.resolution), ("width", self.frame_width)):
            if size % self.patch_size:
                raise ValueError(f"frame {name} {size} is not divisible by patch_size {self.patch_size}")
        for name, heads in (("heads", self.heads), ("proj_heads", self.proj_heads)):
            if self.dim % heads:
                raise ValueError(f"dim {self.dim} is not divisible by {name}={heads}")

    @property
    def frame_width(self) -> int:
        return self.width or self.resolution

    @property
    def layout(self) -> "PlaneLayout":
        return PlaneLayout(self.frames, self.resolution // self.patch_size, self.frame_width // self.patch_size)


@dataclass(frozen=True)
class PlaneLayout:
    """Sizes of the feature grid ``(S, H', W')`` and the flat latent layout built from it.

    ``split`` / ``merge`` convert between ``[B, C, N]`` (``N = H'W' + S W' + S H'``) and the planes
    ``{'hw': [B, C, H', W'], 'tw': [B, C, S, W'], 'th': [B, C, S, H']}``; any channel count C works,
    so the denoiser uses them on its inputs with the condition concatenated on channels.
    """

    frames: int
    height: int
    width: int

    @property
    def shapes(self) -> dict[str, tuple[int, int]]:
        return {"hw": (self.height, self.width), "tw": (self.frames, self.width), "th": (self.frames, self.height)}

    @property
    def sizes(self) -> list[int]:
        return [a * b for a, b in self.shapes.values()]

    @property
    def numel(self) -> int:
        """Latent positions per channel: the sum of the three planes' sizes."""
        return sum(self.sizes)

    def split(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        if latent.dim() != 3 or latent.shape[-1] != self.numel:
            raise ValueError(f"a latent of this layout is [B, C, {self.numel}] "
                             f"({' + '.join(map(str, self.sizes))}); got shape {tuple(latent.shape)}")
        parts = latent.split(self.sizes, dim=-1)
        return {name: rearrange(part, "b c (x y) -> b c x y", x=shape[0])
                for (name, shape), part in zip(self.shapes.items(), parts)}

    def merge(self, planes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        for name, shape in self.shapes.items():
            if name not in planes or planes[name].dim() != 4 or tuple(planes[name].shape[2:]) != shape:
                got = tuple(planes[name].shape) if name in planes else "missing"
                raise ValueError(f"plane '{name}' must be [B, C, {shape[0]}, {shape[1]}]; got {got}")
        return torch.cat([rearrange(planes[name], "b c x y -> b c (x y)") for name in PLANES], dim=-1)

    def downsampled(self, factor: int) -> "PlaneLayout":
        """Every axis divided by ``factor`` (the denoiser's coarser levels)."""
        if self.frames % factor or self.height % factor or self.width % factor:
            raise ValueError(f"planes of {self} cannot be downsampled by {factor}")
        return PlaneLayout(self.frames // factor, self.height // factor, self.width // factor)


# ----------------------------------------------------------------------------- transformer pieces
class SelfAttention(nn.Module):
    """Multi-head self-attention over ``[N, L, C]`` (``F.scaled_dot_product_attention``), no norm."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three g d) -> three n g l d", three=3, g=self.heads)
        return self.out(rearrange(F.scaled_dot_product_attention(q, k, v), "n g l d -> n l (g d)"))


class PreNorm(nn.Module):
    """``x + fn(LayerNorm(x))``: a residual transformer sub-layer."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(self.norm(x))


def mlp(dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SpaceTimeBlock(nn.Module):
    """TimeSformer's divided attention on ``[B, S, H, W, C]``: over time at each patch, over the
    patches of each frame, then an MLP (all pre-norm, residual)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.time = PreNorm(dim, SelfAttention(dim, heads))
        self.space = PreNorm(dim, SelfAttention(dim, heads))
        self.mlp = PreNorm(dim, mlp(dim, mlp_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h, w, _ = x.shape
        x = rearrange(self.time(rearrange(x, "b s h w c -> (b h w) s c")), "(b h w) s c -> b s h w c", b=b, h=h)
        x = rearrange(self.space(rearrange(x, "b s h w c -> (b s) (h w) c")), "(b s) (h w) c -> b s h w c", b=b, h=h)
        return self.mlp(x)


class SpaceTimeTransformer(nn.Module):
    """Learned axial positions (time, row, column), ``depth`` :class:`SpaceTimeBlock` s, a LayerNorm.
    Input and output ``[B, S, H, W, C]`` on the grid given by ``layout``."""

    def __init__(self, layout: PlaneLayout, dim: int, heads: int, depth: int, mlp_dim: int,
                 checkpointing: bool = False) -> None:
        super().__init__()
        self.layout = layout
        self.pos_t = nn.Parameter(torch.randn(layout.frames, dim) * 0.02)
        self.pos_h = nn.Parameter(torch.randn(layout.height, dim) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(layout.width, dim) * 0.02)
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_t[:, None, None] + self.pos_h[None, :, None] + self.pos_w[None, None, :]
        for block in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)


class AxisProjection(nn.Module):
    """Sequences ``[N, L, C]`` -> ``[N, C]``: a learned summary token is prepended, learned positions
    added, ``depth`` transformer blocks run, and the summary token's output is returned."""

    def __init__(self, length: int, dim: int, heads: int, depth: int, mlp_dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(length + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(nn.Sequential(PreNorm(dim, SelfAttention(dim, heads)),
                                                    PreNorm(dim, mlp(dim, mlp_dim))) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if seq.shape[1] + 1 != self.pos.shape[0]:
            raise ValueError(f"projection built for sequences of {self.pos.shape[0] - 1}; got {seq.shape[1]}")
        x = torch.cat([repeat(self.token, "c -> n 1 c", n=seq.shape[0]), seq], dim=1) + self.pos
        return self.norm(self.blocks(x)[:, 0])


# ----------------------------------------------------------------------------- stems
class PatchStem(nn.Module):
    """``[B, 3, T, H, W]`` -> ``[B, T, H/p, W/p, C]``: a linear map of each ``p x p`` patch."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(3 * patch * patch, dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        p = self.patch
        return self.proj(rearrange(video, "b c t (h p1) (w p2) -> b t h w (p1 p2 c)", p1=p, p2=p))


class PatchHead(nn.Module):
    """``[B, S, H', W', C]`` -> ``[B, 3, T, H, W]`` (pre-tanh): each token to its ``p x p`` patch."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(dim, 3 * patch * patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        return rearrange(self.proj(x), "b t h w (p1 p2 c) -> b c t (h p1) (w p2)", p1=p, p2=p)


class ConvStem(nn.Module):
    """``[B, 3, T, H, W]`` -> ``[B, T, H/p, W/p, C]``: a per-frame stride-2 conv stack (``log2 p`` steps)."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.net = DownStack(3, dim, int(math.log2(patch)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        return rearrange(self.net(rearrange(video, "b c t h w -> (b t) c h w")), "(b t) c h w -> b t h w c", b=b)


class ConvHead(nn.Module):
    """``[B, S, H', W', C]`` -> ``[B, 3, T, H, W]`` (pre-tanh): a per-frame upsampling conv stack."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(UpStack(dim, int(math.log2(patch))), norm2d(dim), nn.GELU(),
                                 nn.Conv2d(dim, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return rearrange(self.net(rearrange(x, "b t h w c -> (b t) c h w")), "(b t) c h w -> b c t h w", b=b)


# ----------------------------------------------------------------------------- the autoencoder
class PVDMAutoencoder(nn.Module):
    """``encode_latent(video) -> latent [B, E, N]``, ``decode(latent) -> video``; see the module docstring."""

    def __init__(self, cfg: PVDMAutoencoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else PVDMAutoencoderConfig(), PVDMAutoencoderConfig)
        self.cfg = cfg
        self.frames, self.resolution = cfg.frames, cfg.resolution  # models.interface.FirstStage
        self.layout = layout = cfg.layout
        c, mlp_dim = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
        stem, head = (PatchStem, PatchHead) if cfg.stem == "patch" else (ConvStem, ConvHead)
        self.stem = stem(cfg.patch_size, c)
        self.encoder = SpaceTimeTransformer(layout, c, cfg.heads, cfg.depth, mlp_dim, cfg.checkpointing)
        # The axis each plane projects out, and that axis' length.
        lengths = {"hw": layout.frames, "tw": layout.height, "th": layout.width}
        self.project_along = nn.ModuleDict({
            name: AxisProjection(length, c, cfg.proj_heads, cfg.proj_depth, cfg.proj_mlp_dim)
            for name, length in lengths.items()})
        self.to_latent = nn.ModuleDict({name: nn.Conv2d(c, cfg.embed_dim, 1) for name in PLANES})
        self.from_latent = nn.ModuleDict({name: nn.Conv2d(cfg.embed_dim, c, 1) for name in PLANES})
        self.decoder = SpaceTimeTransformer(layout, c, cfg.heads, cfg.decoder_depth, mlp_dim, cfg.checkpointing)
        self.head = head(cfg.patch_size, c)

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(E, N)``: one clip's latent without the batch dimension."""
        return self.cfg.embed_dim, self.layout.numel

    def _check_video(self, video: torch.Tensor) -> None:
        want = (3, self.cfg.frames, self.cfg.resolution, self.cfg.frame_width)
        if video.dim() != 5 or tuple(video.shape[1:]) != want:
            raise ValueError(f"video must be [B, {', '.join(map(str, want))}]; got shape {tuple(video.shape)}")

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """``u`` ``[B, C, S, H', W']`` of a clip ``[B, 3, T, H, W]`` in [-1, 1]."""
        self._check_video(video)
        return rearrange(self.encoder(self.stem(video)), "b s h w c -> b c s h w")

    def project(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three planes (after the 1x1 conv and tanh) of features ``u`` ``[B, C, S, H', W']``."""
        b, _, s, h, w = u.shape
        if (s, h, w) != (self.layout.frames, self.layout.height, self.layout.width):
            raise ValueError(f"features must be [B, C, {self.layout.frames}, {self.layout.height}, "
                             f"{self.layout.width}]; got shape {tuple(u.shape)}")
        summaries = {
            "hw": rearrange(self.project_along["hw"](rearrange(u, "b c s h w -> (b h w) s c")),
                            "(b h w) c -> b c h w", b=b, h=h),
            "tw": rearrange(self.project_along["tw"](rearrange(u, "b c s h w -> (b s w) h c")),
                            "(b s w) c -> b c s w", b=b, s=s),
            "th": rearrange(self.project_along["th"](rearrange(u, "b c s h w -> (b s h) w c")),
                            "(b s h) c -> b c s h", b=b, s=s),
        }
        return {name: torch.tanh(self.to_latent[name](x)) for name, x in summaries.items()}

    def unproject(self, planes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, C, S, H', W']``: each plane mapped back to C channels, broadcast along its missing
        axis, and the three summed."""
        s, h, w = self.layout.frames, self.layout.height, self.layout.width
        hw, tw, th = (self.from_latent[name](planes[name]) for name in PLANES)
        return (repeat(hw, "b c h w -> b c s h w", s=s) + repeat(tw, "b c s w -> b c s h w", h=h)
                + repeat(th, "b c s h -> b c s h w", w=w))

    def encode_latent(self, video: torch.Tensor) -> torch.Tensor:
        """Clip ``[B, 3, T, H, W]`` in [-1, 1] -> latent ``[B, E, N]`` (layout: :class:`PlaneLayout`)."""
        return self.layout.merge(self.project(self.features(video)))

    def encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"codes": latent}`` (:class:`models.interface.FirstStage`); see :meth:`encode_latent`."""
        return {"codes": self.encode_latent(video)}

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, E, N]`` -> clip ``[B, 3, T, H, W]`` in [-1, 1]."""
        if latent.dim() != 3 or latent.shape[1] != self.cfg.embed_dim:
            raise ValueError(f"latent must be [B, {self.cfg.embed_dim}, {self.layout.numel}]; "
                             f"got shape {tuple(latent.shape)}")
        volume = rearrange(self.unproject(self.layout.split(latent)), "b c s h w -> b s h w c")
        return torch.tanh(self.head(self.decoder(volume)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``video``."""
        return self.decode(self.encode_latent(video))


def split_latent(latent: torch.Tensor, layout: PlaneLayout) -> dict[str, torch.Tensor]:
    """The three planes of a flat latent ``[B, E, N]`` (see :class:`PlaneLayout`)."""
    return layout.split(latent)
