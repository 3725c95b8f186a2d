"""Input checks and conditioning helpers shared by the denoisers' ``forward``.

The denoiser interface (all variants)::

    forward(x_t, t, cond, cond_mask=None) -> Tensor shaped like x_t

``x_t`` ``[B, D, T, Hm, Wm]`` noisy future motion latents; ``t`` ``[B]`` timesteps (a scalar is
broadcast); ``cond`` holds ``scene`` ``[B, D, 1, Hs, Ws]``, ``object`` ``[B, D, 1, Ho, Wo]`` and
``motion`` ``[B, D, T, Hm, Wm]`` from the observed frames; ``cond_mask`` ``[B]`` bool, False =
unconditional sample (classifier-free guidance): its output must not depend on ``cond``.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from models.unets.layers import TimestepEmbedder

STREAMS = ("scene", "object", "motion")


def parse_latent_shapes(latent_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, int, int]]:
    """``{'scene': (1, Hs, Ws), 'object': (1, Ho, Wo), 'motion': (T, Hm, Wm)}``, checked."""
    missing = [s for s in STREAMS if s not in latent_shapes]
    if missing:
        raise ValueError(f"latent_shapes lacks {missing}; expected keys {list(STREAMS)}")
    shapes = {}
    for s in STREAMS:
        shape = tuple(int(v) for v in latent_shapes[s])
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"latent_shapes['{s}'] must be (T, H, W) with positive sizes, got {latent_shapes[s]}")
        shapes[s] = shape
    for s in ("scene", "object"):
        if shapes[s][0] != 1:
            raise ValueError(f"{s} latents must have one frame (one map per clip), got shape {shapes[s]}")
    return shapes


def check_inputs(x_t: torch.Tensor, t: torch.Tensor | int | float, cond: Mapping[str, torch.Tensor],
                 cond_mask: Optional[torch.Tensor], code_dim: int,
                 shapes: Mapping[str, tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the interface's inputs; return ``t`` as ``[B]`` and ``cond_mask`` as bool ``[B]``."""
    if x_t.dim() != 5:
        raise ValueError(f"x_t must be [B, D, T, H, W], got shape {tuple(x_t.shape)}")
    b = x_t.shape[0]
    expected = {"x_t": shapes["motion"], **shapes}
    tensors = {"x_t": x_t}
    for s in STREAMS:
        if s not in cond:
            raise ValueError(f"cond lacks '{s}'; it must hold {list(STREAMS)}")
        tensors[s] = cond[s]
    for name, x in tensors.items():
        want = (b, code_dim, *expected[name])
        if tuple(x.shape) != want:
            where = name if name == "x_t" else f"cond['{name}']"
            raise ValueError(f"{where} has shape {tuple(x.shape)}, the net was built for {want}")
    t = torch.as_tensor(t, device=x_t.device)
    if t.dim() == 0:
        t = t.expand(b)
    if tuple(t.shape) != (b,):
        raise ValueError(f"t must be [B] = [{b}] (or a scalar), got shape {tuple(t.shape)}")
    if cond_mask is None:
        cond_mask = torch.ones(b, dtype=torch.bool, device=x_t.device)
    elif tuple(cond_mask.shape) != (b,):
        raise ValueError(f"cond_mask must be [B] = [{b}], got shape {tuple(cond_mask.shape)}")
    return t, cond_mask.to(device=x_t.device, dtype=torch.bool)


def keep_where(x: torch.Tensor, keep: torch.Tensor, null: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``x`` for samples with ``keep`` True, ``null`` otherwise. ``where`` rather than a product,
    so that not even a NaN in a dropped condition reaches the output."""
    keep = keep.view(-1, *(1,) * (x.dim() - 1))
    null = null.to(x.dtype) if isinstance(null, torch.Tensor) else torch.tensor(null, dtype=x.dtype, device=x.device)
    return torch.where(keep, x, null)


class ConditionedTimeEmbedding(nn.Module):
    """Timestep embedding plus a learned 'conditioned / unconditional' vector, so the net knows
    when the condition was dropped rather than reading zeros as a real condition."""

    def __init__(self, freq_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.time = TimestepEmbedder(freq_dim, emb_dim)
        self.cond_flag = nn.Embedding(2, emb_dim)
        nn.init.zeros_(self.cond_flag.weight)  # start neutral; the two rows part as training sees both

    def forward(self, t: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        return self.time(t) + self.cond_flag(cond_mask.long())
