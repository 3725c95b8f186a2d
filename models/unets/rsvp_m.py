"""RSVP-M: masked conditional DDPM with cross-attention to the scene and object.

One 3D U-Net over a motion sequence of length 2T: ``[observed motion (clean) ; x_t (noisy
future)]`` along time, plus a mask channel that is 1 on the known (observed) frames. Res blocks
use 3D convs (spatial-only resampling, so the 2T frames are kept); at the attention levels and
in the middle block, space-time self-attention over all motion tokens is followed by
cross-attention to context tokens encoded from the scene and object maps. The prediction is
read at the future frames only (shape of ``x_t``).

Classifier-free guidance: for samples with ``cond_mask`` False the observed half and its mask
channel are zeroed (nothing is known) and the context tokens are replaced by a learned null
token; a learned 'unconditional' vector joins the timestep embedding.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models import register_model
from models.unets.common import check_inputs, keep_where
from models.unets.config import RSVPMConfig
from models.unets.layers import (CrossAttention, Downsample, JointAttention, ResBlock, conv_nd, fourier_positions,
                                 group_norm, zero_)
from models.unets.rsvp_s2 import check_kernel
from models.unets.trunk import StreamUNet, setup_denoiser

CONTEXT_STREAMS = ("scene", "object")


class ContextEncoder(nn.Module):
    """Scene and object maps ``[B, D, 1, H, W]`` -> context tokens ``[B, Ns + No, C]``.

    Per stream: 3x3 conv, ``blocks`` 2D res blocks, then stride-2 convs until H, W <= ``max_size``
    (bounds the token count at 256x256 inputs); tokens get position features and a stream vector.
    """

    def __init__(self, code_dim: int, channels: int, blocks: int, max_size: int, pos_freqs: int,
                 shapes: Mapping[str, tuple[int, int, int]], norm_groups: int = 32) -> None:
        super().__init__()
        if max_size < 1:
            raise ValueError(f"context_max_size must be >= 1, got {max_size}")
        self.encoders = nn.ModuleDict()
        for s in CONTEXT_STREAMS:
            _, h, w = shapes[s]
            layers: list[nn.Module] = [conv_nd(code_dim, channels, (3, 3))]
            layers += [ResBlock(channels, channels, (3, 3), 0, norm_groups=norm_groups) for _ in range(blocks)]
            while h > max_size or w > max_size:
                layers.append(Downsample(channels, (3, 3)))
                h, w = (h + 1) // 2, (w + 1) // 2
            self.encoders[s] = nn.Sequential(*layers)
            self.register_buffer(f"pos_{s}", fourier_positions(1, h, w, pos_freqs, temporal=False), persistent=False)
        self.pos_proj = nn.Linear(6 * pos_freqs, channels)
        self.stream_embed = nn.Parameter(torch.zeros(len(CONTEXT_STREAMS), channels))
        self.norm = nn.LayerNorm(channels)

    def forward(self, maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
        tokens = []
        for i, s in enumerate(CONTEXT_STREAMS):
            feats = rearrange(self.encoders[s](maps[s][:, :, 0]), "b c h w -> b (h w) c")
            pos = getattr(self, f"pos_{s}").to(feats.dtype)
            tokens.append(feats + self.pos_proj(pos) + self.stream_embed[i])
        return self.norm(torch.cat(tokens, dim=1))


class SelfCrossAttention(nn.Module):
    """Optional space-time self-attention over the motion tokens, then cross-attention to the context."""

    def __init__(self, channels: int, positions: torch.Tensor, context_dim: int, head_dim: int,
                 norm_groups: int, self_attention: bool) -> None:
        super().__init__()
        self.self_attn = (JointAttention(channels, {"motion": positions}, head_dim, norm_groups=norm_groups)
                          if self_attention else None)
        self.cross = CrossAttention(channels, context_dim, head_dim, norm_groups)

    def forward(self, h: dict[str, torch.Tensor], context: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.self_attn is not None:
            h = self.self_attn(h)
        return {"motion": self.cross(h["motion"], context)}


@register_model("rsvp_m")
class RSVPMUNet(nn.Module):
    """``forward(x_t, t, cond, cond_mask=None) -> [B, D, T, Hm, Wm]`` (see :mod:`models.unets.common`)."""

    config_class = RSVPMConfig

    def __init__(self, cfg: RSVPMConfig | Mapping, code_dim: int,
                 latent_shapes: Mapping[str, tuple[int, int, int]]) -> None:
        super().__init__()
        cfg, shapes, widths, emb_dim = setup_denoiser(self, cfg, RSVPMConfig, code_dim, latent_shapes)
        frames, hm, wm = shapes["motion"]
        kernel = check_kernel("motion_kernel", cfg.motion_kernel, 3)
        d, c0 = self.code_dim, widths[0]
        self.stem = conv_nd(d + 1, c0, kernel)  # [observed ; x_t] along time, + the known-frame mask
        self.context = ContextEncoder(d, cfg.context_channels, cfg.context_blocks, cfg.context_max_size,
                                      cfg.pos_freqs, shapes, cfg.norm_groups)
        self.null_context = nn.Parameter(torch.zeros(1, 1, cfg.context_channels))

        def make_attention(level: int, channels: int, query_streams: tuple[str, ...]) -> nn.Module:
            positions = fourier_positions(2 * frames, hm >> level, wm >> level, cfg.pos_freqs, temporal=True)
            return SelfCrossAttention(channels, positions, cfg.context_channels, cfg.attn_head_dim,
                                      cfg.norm_groups, cfg.self_attention)

        self.trunk = StreamUNet({"motion": kernel}, "motion", cfg, make_attention, emb_dim)
        self.out_norm = group_norm(c0, cfg.norm_groups)
        self.out = zero_(conv_nd(c0, d, kernel))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Mapping[str, torch.Tensor],
                cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        t, keep = check_inputs(x_t, t, cond, cond_mask, self.code_dim, self.latent_shapes)
        b, _, frames, hm, wm = x_t.shape
        emb = self.embed(t, keep)
        observed = keep_where(cond["motion"].to(x_t.dtype), keep)
        known = keep.to(x_t.dtype).view(b, 1, 1, 1, 1).expand(b, 1, frames, hm, wm)
        mask = torch.cat([known, torch.zeros_like(known)], dim=2)
        seq = torch.cat([torch.cat([observed, x_t], dim=2), mask], dim=1)
        context = self.context({s: cond[s].to(x_t.dtype) for s in CONTEXT_STREAMS})
        context = keep_where(context, keep, self.null_context.to(context.dtype))
        h = self.trunk({"motion": self.stem(seq)}, emb, context=context)
        return self.out(F.silu(self.out_norm(h)))[:, :, frames:]
