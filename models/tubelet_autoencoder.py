"""The tubelet FSQ autoencoder: a clip as a grid of discrete tokens, one per tubelet (docs/TUBELET.md).

A clip ``[B, 3, T, H, W]`` in [-1, 1] is cut into non-overlapping tubelets of ``t x p x p`` pixels
(ViViT's tubelet embedding, Arnab et al. 2021: a Conv3d whose kernel and stride are the tubelet);
residual blocks mix neighbouring tubelets of the same time step, a 1x1x1 convolution maps each to
``len(levels)`` channels, and finite scalar quantization (Mentzer et al. 2023) rounds each channel to
one of ``levels[i]`` values: the token index is the mixed-radix number of the rounded channels, so the
implicit codebook has ``prod(levels)`` entries and nothing to collapse.

The encoder never mixes time steps (its kernels are ``1 x 3 x 3`` on the token grid): the tokens of
a tubelet depend on its own frames only, so encoding the observed frames alone gives the same tokens
as encoding them inside a longer clip. The decoder mixes neighbouring time steps (``3 x 3 x 3``) and
unfolds each token back into its tubelet with a transposed Conv3d, then smooths across tubelet
borders with one pixel-level convolution. Both take any clip length that ``t`` divides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from einops import rearrange
from torch import nn

from models.lvdm_autoencoder import ResBlock3d, conv3d
from models.quantizers import FSQuantizer
from models.unets.config import coerce_config
from models.unets.layers import group_norm


@dataclass
class TubeletAutoencoderConfig:
    frames: int = 16  # T of the clips it is trained on (it encodes any length that tubelet[0] divides)
    resolution: int = 256  # H = W
    tubelet: list[int] = field(default_factory=lambda: [4, 8, 8])  # (t, h, w) pixels per token
    channels: int = 128  # width on the token grid
    res_blocks: int = 2  # residual blocks in the encoder and in the decoder
    pixel_channels: int = 32  # width of the decoder's last, pixel-level convolution
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # FSQ levels: codebook size = product
    norm_groups: int = 32

    def __post_init__(self) -> None:
        if len(self.tubelet) != 3 or min(self.tubelet) < 1:
            raise ValueError(f"tubelet must be three positive sizes (t, h, w); got {list(self.tubelet)}")
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"levels must be FSQ levels of at least 2 each; got {list(self.levels)}")
        if min(self.frames, self.resolution, self.channels, self.pixel_channels) < 1 or self.res_blocks < 0:
            raise ValueError(f"tubelet autoencoder sizes must be positive; got {self}")
        t, h, w = self.tubelet
        if self.frames % t or self.resolution % h or self.resolution % w:
            raise ValueError(f"clips of {self.frames}x{self.resolution}x{self.resolution} are not divisible into "
                             f"tubelets of {list(self.tubelet)}")


def spatial_conv(cin: int, cout: int) -> nn.Conv3d:
    """A ``1 x 3 x 3`` convolution on the token grid: neighbours in space, never in time."""
    return nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1), padding_mode="replicate")


class StepGroupNorm(nn.Module):
    """GroupNorm with statistics over each time step alone (a plain one would mix the steps of a clip)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        return rearrange(self.norm(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) c h w -> b c t h w", t=t)


class SpatialResBlock(nn.Module):
    """Per-step GroupNorm-SiLU-conv twice with ``1 x 3 x 3`` kernels, residual: a time step sees only itself."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(StepGroupNorm(channels, groups), nn.SiLU(), spatial_conv(channels, channels),
                                  StepGroupNorm(channels, groups), nn.SiLU(), spatial_conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TubeletAutoencoder(nn.Module):
    """``encode(clip) -> {"codes", "indices"}``, ``decode(codes) -> clip``, ``forward = decode(encode)``.

    ``codes`` ``[B, D, T/t, H/p, W/p]`` are the FSQ grid points (``D = len(levels)``, values in [-1, 1]);
    ``indices`` ``[B, T/t, H/p, W/p]`` their token numbers in ``[0, prod(levels))``."""

    def __init__(self, cfg: TubeletAutoencoderConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else TubeletAutoencoderConfig(), TubeletAutoencoderConfig)
        self.cfg = cfg
        self.frames, self.resolution = cfg.frames, cfg.resolution
        self.tubelet = tuple(int(s) for s in cfg.tubelet)
        self.code_dim = len(cfg.levels)
        c, g = cfg.channels, cfg.norm_groups
        self.encoder = nn.Sequential(
            nn.Conv3d(3, c, self.tubelet, stride=self.tubelet),  # tubelet embedding
            *[SpatialResBlock(c, g) for _ in range(cfg.res_blocks)],
            StepGroupNorm(c, g), nn.SiLU(), nn.Conv3d(c, self.code_dim, 1))
        self.quantizer = FSQuantizer(self.code_dim, list(cfg.levels))
        self.codebook_size = self.quantizer.codebook_size
        self.decoder = nn.Sequential(
            conv3d(self.code_dim, c), *[ResBlock3d(c, c, g) for _ in range(cfg.res_blocks)],
            group_norm(c, g), nn.SiLU(),
            nn.ConvTranspose3d(c, cfg.pixel_channels, self.tubelet, stride=self.tubelet),  # token -> tubelet
            nn.SiLU(), conv3d(cfg.pixel_channels, 3))

    def token_grid(self, frames: int | None = None) -> tuple[int, int, int]:
        """``(T', H', W')``: the token grid of a clip of ``frames`` frames (default: the training length)."""
        frames = self.frames if frames is None else frames
        t, h, w = self.tubelet
        return (frames // t, self.resolution // h, self.resolution // w)

    def _check_clip(self, clip: torch.Tensor) -> None:
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"clips are [B, 3, T, H, W]; got shape {tuple(clip.shape)}")
        if any(n % s for n, s in zip(clip.shape[2:], self.tubelet)):
            raise ValueError(f"a clip of {tuple(clip.shape[2:])} (t, h, w) is not divisible into tubelets of "
                             f"{self.tubelet}")

    def encode(self, clip: torch.Tensor, **context: Any) -> dict[str, torch.Tensor]:
        """``[B, 3, T, H, W]`` -> ``codes`` ``[B, D, T', H', W']`` and ``indices`` ``[B, T', H', W']``."""
        self._check_clip(clip)
        z = self.encoder(clip)
        b, _, t, h, w = z.shape
        codes, indices, _ = self.quantizer(rearrange(z, "b d t h w -> b (t h w) d"))
        return {"codes": rearrange(codes, "b (t h w) d -> b d t h w", t=t, h=h, w=w),
                "indices": rearrange(indices, "b (t h w) -> b t h w", t=t, h=h, w=w)}

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """``[B, T', H', W']`` token numbers -> ``[B, D, T', H', W']`` FSQ grid points."""
        b, t, h, w = indices.shape
        codes = self.quantizer.codes_from_indices(rearrange(indices, "b t h w -> b (t h w)"))  # [B, N, D]
        return rearrange(codes, "b (t h w) d -> b d t h w", t=t, h=h, w=w).to(self.decoder[0].weight.dtype)

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """``[B, D, T', H', W']`` -> ``[B, 3, T' t, H' p, W' p]`` in [-1, 1] (tanh)."""
        if codes.dim() != 5 or codes.shape[1] != self.code_dim:
            raise ValueError(f"codes are [B, {self.code_dim}, T', H', W']; got shape {tuple(codes.shape)}")
        return torch.tanh(self.decoder(codes))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decode(self.codes_from_indices(indices))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(clip)["codes"])

    def codebook(self) -> torch.Tensor:
        """``[prod(levels), D]``: the code of every token number."""
        ids = torch.arange(self.codebook_size, device=self.decoder[0].weight.device)
        return self.quantizer.codes_from_indices(ids)


def tokens_per_step(first_stage: TubeletAutoencoder) -> int:
    """Tokens of one time step (``H' W'``)."""
    return math.prod(first_stage.token_grid()[1:])


class TubeletTokens:
    """What ``--exp extract`` stores of a tubelet autoencoder: the token grid ``tokens`` ``[T', H', W']``
    of every clip of ``cond_frames + frames`` frames (``cond_frames`` 0: the autoencoder's clips).

    A clip is encoded whole: the encoder never mixes time steps, so the tokens of its first ``K``
    frames are those of the observed frames alone; the transformer trains on the whole sequence."""

    def __init__(self, first_stage: TubeletAutoencoder, cond_frames: int) -> None:
        self.first_stage, self.cond_frames = first_stage, int(cond_frames)
        frames = first_stage.frames + self.cond_frames
        if frames % first_stage.tubelet[0]:
            raise ValueError(f"clips of {frames} frames (model.cond_frames {cond_frames} + {first_stage.frames}) are "
                             f"not whole tubelets of {first_stage.tubelet[0]} frames")
        self.shapes = {"tokens": first_stage.token_grid(frames)}
        self.codebook_size = first_stage.codebook_size

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"tokens": self.first_stage.encode(video)["indices"]}

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        return self.first_stage.codebook()

    def meta(self) -> dict:
        return {"codebook_size": int(self.codebook_size), "code_dim": self.first_stage.code_dim,
                "quantizer": "fsq", "levels": list(self.first_stage.cfg.levels),
                "tubelet": list(self.first_stage.tubelet), "order": "time-major, raster within a step",
                "latent_shapes": {k: list(v) for k, v in self.shapes.items()}}
