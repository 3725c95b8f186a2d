"""RSVP-S1: the seed's failed per-frame 2D design, kept as an ablation.

Every frame is denoised on its own by a 2D U-Net: the motion latents are reshaped to
``(b t) c h w`` and frame ``k``'s input is ``[x_t[k] ; observed motion[k] ; scene ; object]`` on
channels, with the scene and object maps resized (area) to the motion grid. Attention (SDPA) is
spatial, within one frame. What mixes and what does not:

- output frame ``k`` depends on ``x_t[k]``, observed motion frame ``k``, the scene, the object,
  ``t`` and (``frame_embed``) the index ``k``;
- it does NOT depend on any other frame of ``x_t`` or of the observed motion: there is no
  temporal mixing at all -- the flaw the seed blames for RSVP-S1's noisy samples.

Classifier-free guidance as in RSVP-S2: dropped samples see zeros for every condition and a
learned 'unconditional' vector in the timestep embedding.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from models import register_model
from models.unets.common import check_inputs, keep_where
from models.unets.config import RSVPS1Config
from models.unets.layers import JointAttention, conv_nd, fourier_positions, group_norm, zero_
from models.unets.trunk import StreamUNet, setup_denoiser

KERNEL = (3, 3)


@register_model("rsvp_s1")
class RSVPS1UNet(nn.Module):
    """``forward(x_t, t, cond, cond_mask=None) -> [B, D, T, Hm, Wm]`` (see :mod:`models.unets.common`)."""

    config_class = RSVPS1Config

    def __init__(self, cfg: RSVPS1Config | Mapping, code_dim: int,
                 latent_shapes: Mapping[str, tuple[int, int, int]]) -> None:
        super().__init__()
        cfg, shapes, widths, emb_dim = setup_denoiser(self, cfg, RSVPS1Config, code_dim, latent_shapes)
        frames, hm, wm = shapes["motion"]
        self.frame_embed = nn.Embedding(frames, emb_dim) if cfg.frame_embed else None
        if self.frame_embed is not None:
            nn.init.zeros_(self.frame_embed.weight)
        d, c0 = self.code_dim, widths[0]
        self.stem = conv_nd(4 * d, c0, KERNEL)  # [x_t ; observed ; scene ; object] of one frame

        def make_attention(level: int, channels: int, query_streams: tuple[str, ...]) -> nn.Module:
            positions = {"motion": fourier_positions(1, hm >> level, wm >> level, cfg.pos_freqs, temporal=False)}
            return JointAttention(channels, positions, cfg.attn_head_dim, query_streams, cfg.norm_groups)

        self.trunk = StreamUNet({"motion": KERNEL}, "motion", cfg, make_attention, emb_dim)
        self.out_norm = group_norm(c0, cfg.norm_groups)
        self.out = zero_(conv_nd(c0, d, KERNEL))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Mapping[str, torch.Tensor],
                cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        t, keep = check_inputs(x_t, t, cond, cond_mask, self.code_dim, self.latent_shapes)
        b, _, frames, hm, wm = x_t.shape
        emb = repeat(self.embed(t, keep), "b e -> (b t) e", t=frames)
        if self.frame_embed is not None:
            emb = emb + repeat(self.frame_embed.weight, "t e -> (b t) e", b=b)
        observed = keep_where(cond["motion"].to(x_t.dtype), keep)
        maps = [F.interpolate(keep_where(cond[s][:, :, 0].to(x_t.dtype), keep), size=(hm, wm), mode="area")
                for s in ("scene", "object")]
        maps = [repeat(m, "b d h w -> b d t h w", t=frames) for m in maps]
        x = rearrange(torch.cat([x_t, observed, *maps], dim=1), "b c t h w -> (b t) c h w")
        out = self.out(F.silu(self.out_norm(self.trunk({"motion": self.stem(x)}, emb))))
        return rearrange(out, "(b t) d h w -> b d t h w", b=b)
