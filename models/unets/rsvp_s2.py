"""RSVP-S2: the main second-stage denoiser (3D convolutions, cross-stream self-attention).

Three streams run through one U-Net ladder (:class:`StreamUNet`), each with its own blocks:

- ``motion``: the noisy future motion ``x_t`` concatenated ON CHANNELS with the observed motion
  ``[B, 2D, T, Hm, Wm]``; 3D res blocks (``motion_kernel``, default 3x3x3) mix frames.
- ``scene`` / ``object``: the observed one-map latents ``[B, D, 1, H, W]``; kernels
  ``static_kernel`` (default 1x3x3) never slide in time, so they cost a 2D conv each.

Down/upsampling is spatial only (stride (1, 2, 2)), so T is kept at every level; each stream
halves its own H, W per level (streams of different sizes keep different token grids). At the
attention levels and in the middle block, the tokens of the three streams are concatenated into
one self-attention (SDPA), with normalised (t, y, x) Fourier position features, so scene and
object tokens line up with the motion tokens covering the same image region. Only the motion
stream is decoded; the output is the eps/v prediction for ``x_t``.

Classifier-free guidance: for samples with ``cond_mask`` False the observed motion, scene and
object inputs are replaced by zeros and a learned 'unconditional' vector joins the timestep
embedding; nothing else reads ``cond``, so those outputs do not depend on it.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models import register_model
from models.unets.common import STREAMS, check_inputs, keep_where
from models.unets.config import RSVPS2Config
from models.unets.layers import JointAttention, conv_nd, fourier_positions, group_norm, zero_
from models.unets.trunk import StreamUNet, setup_denoiser


def check_kernel(name: str, kernel: list[int], dims: int) -> tuple[int, ...]:
    kernel = tuple(int(k) for k in kernel)
    if len(kernel) != dims or any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(f"{name} must be {dims} odd positive sizes, got {list(kernel)}")
    return kernel


@register_model("rsvp_s2")
class RSVPS2UNet(nn.Module):
    """``forward(x_t, t, cond, cond_mask=None) -> [B, D, T, Hm, Wm]`` (see :mod:`models.unets.common`)."""

    config_class = RSVPS2Config

    def __init__(self, cfg: RSVPS2Config | Mapping, code_dim: int,
                 latent_shapes: Mapping[str, tuple[int, int, int]]) -> None:
        super().__init__()
        cfg, shapes, widths, emb_dim = setup_denoiser(self, cfg, RSVPS2Config, code_dim, latent_shapes, STREAMS)
        motion_k = check_kernel("motion_kernel", cfg.motion_kernel, 3)
        static_k = check_kernel("static_kernel", cfg.static_kernel, 3)
        kernels = {"scene": static_k, "object": static_k, "motion": motion_k}
        d, c0 = self.code_dim, widths[0]
        self.stems = nn.ModuleDict({
            "scene": conv_nd(d, c0, static_k),
            "object": conv_nd(d, c0, static_k),
            "motion": conv_nd(2 * d, c0, motion_k),  # [x_t ; observed motion] on channels
        })

        def make_attention(level: int, channels: int, query_streams: tuple[str, ...]) -> nn.Module:
            positions = {s: fourier_positions(shapes[s][0], shapes[s][1] >> level, shapes[s][2] >> level,
                                              cfg.pos_freqs, temporal=s == "motion") for s in STREAMS}
            return JointAttention(channels, positions, cfg.attn_head_dim, query_streams, cfg.norm_groups)

        self.trunk = StreamUNet(kernels, "motion", cfg, make_attention, emb_dim)
        self.out_norm = group_norm(c0, cfg.norm_groups)
        self.out = zero_(conv_nd(c0, d, motion_k))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Mapping[str, torch.Tensor],
                cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        t, keep = check_inputs(x_t, t, cond, cond_mask, self.code_dim, self.latent_shapes)
        emb = self.embed(t, keep)
        observed = keep_where(cond["motion"].to(x_t.dtype), keep)
        h = {
            "scene": self.stems["scene"](keep_where(cond["scene"].to(x_t.dtype), keep)),
            "object": self.stems["object"](keep_where(cond["object"].to(x_t.dtype), keep)),
            "motion": self.stems["motion"](torch.cat([x_t, observed], dim=1)),
        }
        return self.out(F.silu(self.out_norm(self.trunk(h, emb))))
