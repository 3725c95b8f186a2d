"""LVDM's denoiser: a 3D U-Net over a window of latent frames, some of them given as the condition.

The window ``[B, E, L, h, w]`` holds ``L`` latent frames. ``cond`` says which frames are known
(``known`` ``[B, L]``: LVDM's temporal mask) and gives their latents (already perturbed to level
``s``, :func:`perturb`): the net's input is the window with the known frames replaced by them,
plus one mask channel (1 on known frames). With ``cond_mask`` False (or no ``cond``) nothing is
known: the same net generates the whole window, unconditionally. The perturbation level ``s``
(``[B]``, 0 = clean) is embedded and added to the timestep embedding (LVDM: its ADM "class"
embedding over 251 levels).

Blocks (LVDM): convolutions are 1x3x3 (spatial only; ``kernel_size_t: 1``); time is mixed by
attention; residual blocks condition on the timestep by adaptive group norm (``scale_shift``:
``norm(h) * (1 + scale) + shift``); attention is factorized (``attention: factorized``: spatial
self-attention within each frame, then temporal self-attention at each location with a learned
relative-position bias) or joint over all ``L h w`` tokens (``attention: joint``). All attention
runs through ``F.scaled_dot_product_attention``; its pre-norm is a per-token LayerNorm (a GroupNorm
would share statistics across the whole window, so a spatial block would leak across frames). Resampling is spatial only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models import register_model
from models.unets.config import UNetConfig, coerce_config
from models.unets.layers import TimestepEmbedder, conv_nd, group_norm, heads_for, merge_heads, split_heads, zero_
from models.unets.trunk import StreamUNet, check_spatial_ladder, level_widths

if TYPE_CHECKING:
    from models.diffusion.gaussian import GaussianDiffusion

KERNEL = (1, 3, 3)
ATTENTION = ("factorized", "joint")


@dataclass
class LVDMUNetConfig(UNetConfig):
    """LVDM's released U-Net by default (configs/lvdm_long/*.yaml): width 256, mults 1-2-3-4, 3 res
    blocks, attention at downsampling factors 2, 4, 8 (levels 1-3), 4 heads at width 256."""

    channels: int = 256
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    num_res_blocks: int = 3
    attn_levels: list[int] = field(default_factory=lambda: [1, 2, 3])
    attn_head_dim: int = 64
    attention: str = "factorized"  # factorized (spatial, then temporal) | joint (one space-time attention)
    max_relative: int = 16  # temporal attention: relative distances clipped to +-max_relative


def relative_bias_index(frames: int, max_relative: int) -> torch.Tensor:
    """``[L, L]`` indices into a ``2 m + 1`` table of the clipped distance ``j - i``."""
    pos = torch.arange(frames)
    return (pos[None, :] - pos[:, None]).clamp(-max_relative, max_relative) + max_relative


class AxisAttention(nn.Module):
    """Residual self-attention over one token axis of ``[B, C, L, h, w]``: ``space`` (tokens of one
    frame), ``time`` (the frames of one location, with a relative-position bias) or ``joint``."""

    PATTERNS = {"space": ("b c t h w -> (b t) (h w) c", "(b t) (h w) c -> b c t h w"),
                "time": ("b c t h w -> (b h w) t c", "(b h w) t c -> b c t h w"),
                "joint": ("b c t h w -> b (t h w) c", "b (t h w) c -> b c t h w")}

    def __init__(self, axis: str, channels: int, head_dim: int, max_relative: int = 0) -> None:
        super().__init__()
        self.axis, self.head_dim = axis, head_dim
        self.heads = heads_for(channels, head_dim)
        self.norm = nn.LayerNorm(channels)  # per token: no statistics shared across the other axes
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_(nn.Linear(channels, channels))  # starts as the identity
        self.max_relative = max_relative
        self.rel_bias = nn.Parameter(torch.zeros(2 * max_relative + 1, self.heads)) if axis == "time" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        into, back = self.PATTERNS[self.axis]
        seq = self.norm(rearrange(x, into))
        q, k, v = (split_heads(z, self.head_dim) for z in self.qkv(seq).chunk(3, dim=-1))
        bias = None
        if self.rel_bias is not None:  # [heads, L, L], broadcast over the locations
            index = relative_bias_index(t, self.max_relative).to(x.device)
            bias = rearrange(self.rel_bias[index], "i j g -> g i j").to(q.dtype)
        out = self.out(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))
        return x + rearrange(out, back, b=b, t=t, h=h, w=w)


class SpaceTimeAttention(nn.Module):
    """Factorized (space, then time) or joint attention on the trunk's single stream ``video``."""

    def __init__(self, channels: int, cfg: LVDMUNetConfig) -> None:
        super().__init__()
        axes = ("space", "time") if cfg.attention == "factorized" else ("joint",)
        self.blocks = nn.ModuleList([AxisAttention(a, channels, cfg.attn_head_dim, cfg.max_relative)
                                     for a in axes])

    def forward(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = h["video"]
        for block in self.blocks:
            x = block(x)
        return {"video": x}


def perturb(diffusion: "GaussianDiffusion", latent: torch.Tensor, level: torch.Tensor,
            noise: torch.Tensor) -> torch.Tensor:
    """LVDM's conditional latent perturbation: ``latent`` noised to level ``s`` (``[B]``, ints).

    ``s = 0`` leaves the latent exactly as it is; ``s >= 1`` is the forward process at diffusion
    step ``s - 1``, ``sqrt(abar) latent + sqrt(1 - abar) noise``."""
    level = level.to(latent.device).long()
    step = (level - 1).clamp(min=0)
    noisy = diffusion._q_sample(latent, step, noise.to(latent))  # no read of the values: fake tensors work
    return torch.where((level > 0).view(-1, *(1,) * (latent.dim() - 1)), noisy, latent)


@register_model("lvdm_unet")
class LVDMUNet(nn.Module):
    """``forward(x_t, t, cond=None, cond_mask=None) -> [B, E, L, h, w]`` over windows of ``window`` latent frames."""

    config_class = LVDMUNetConfig
    # The second-stage method a config with ``model.net: lvdm_unet`` runs (tools/experiments/lvdm.py).
    method = "lvdm"

    def __init__(self, cfg: LVDMUNetConfig | Mapping[str, Any] | None, latent_channels: int,
                 window: tuple[int, int, int], perturb_levels: int) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else LVDMUNetConfig(), LVDMUNetConfig)
        if cfg.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}; got {cfg.attention!r}")
        if perturb_levels < 0 or cfg.max_relative < 0:
            raise ValueError(f"perturb_levels and max_relative must be >= 0; got {perturb_levels}, {cfg.max_relative}")
        self.cfg, self.latent_channels = cfg, int(latent_channels)
        self.window = tuple(int(v) for v in window)
        widths = level_widths(cfg)
        check_spatial_ladder("the latent", self.window[1], self.window[2], len(widths))
        emb_dim = cfg.time_embed_dim or 4 * cfg.channels
        self.time_embed = TimestepEmbedder(cfg.channels, emb_dim)
        self.level_embed = nn.Embedding(perturb_levels + 1, emb_dim)  # s = 0 .. perturb_levels
        nn.init.zeros_(self.level_embed.weight)
        self.stem = conv_nd(self.latent_channels + 1, widths[0], KERNEL)  # window latents + mask channel
        self.trunk = StreamUNet({"video": KERNEL}, "video", cfg,
                                lambda level, channels, streams: SpaceTimeAttention(channels, cfg), emb_dim)
        self.out = nn.Sequential(group_norm(widths[0], cfg.norm_groups), nn.SiLU(),
                                 zero_(conv_nd(widths[0], self.latent_channels, KERNEL)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: Optional[Mapping[str, torch.Tensor]] = None,
                cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x_t`` ``[B, E, L, h, w]``; ``cond``: ``latent`` like ``x_t`` (read on known frames only),
        ``known`` bool ``[B, L]``, ``level`` ``[B]``; ``cond_mask`` ``[B]`` False: nothing known, level 0."""
        want = (self.latent_channels, *self.window)
        if x_t.dim() != 5 or tuple(x_t.shape[1:]) != want:
            raise ValueError(f"x_t must be [B, {', '.join(map(str, want))}]; got shape {tuple(x_t.shape)}")
        b, length = x_t.shape[0], x_t.shape[2]
        keep = torch.ones(b, dtype=torch.bool, device=x_t.device) if cond_mask is None else cond_mask.to(x_t.device).bool()
        if cond is None:
            known = torch.zeros(b, length, dtype=torch.bool, device=x_t.device)
            latent, level = torch.zeros_like(x_t), torch.zeros(b, dtype=torch.long, device=x_t.device)
        else:
            latent, known, level = cond["latent"], cond["known"].to(x_t.device).bool(), cond["level"].to(x_t.device)
            if latent.shape != x_t.shape or tuple(known.shape) != (b, length) or tuple(level.shape) != (b,):
                raise ValueError(f"cond needs latent {tuple(x_t.shape)}, known [{b}, {length}], level [{b}]; got "
                                 f"{tuple(latent.shape)}, {tuple(known.shape)}, {tuple(level.shape)}")
        known = known & keep[:, None]
        level = torch.where(keep, level.long(), 0)
        frame_mask = known[:, None, :, None, None]  # [B, 1, L, 1, 1]
        x = torch.where(frame_mask, latent.to(x_t.dtype), x_t)
        mask = frame_mask.to(x_t.dtype).expand(-1, -1, -1, *x_t.shape[3:])
        t = torch.as_tensor(t, device=x_t.device)
        emb = self.time_embed(t.expand(b) if t.dim() == 0 else t) + self.level_embed(level)
        h = self.trunk({"video": self.stem(torch.cat([x, mask], dim=1))}, emb)  # [B, C0, L, h, w]
        return self.out(h)


def lvdm_training_loss(net: nn.Module, diffusion: "GaussianDiffusion", window: torch.Tensor, known: torch.Tensor,
                       cond_prob: float, max_level: int, *,
                       generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """The diffusion loss of a window of clean latents ``[B, E, L, h, w]`` whose ``known`` frames
    (bool ``[L]``) are the condition.

    Per sample (drawn in this order from ``generator``, or the global RNG): ``t ~ U{0..N-1}``, the
    noise of ``x_t``, the perturbation level ``s ~ U{0..max_level}`` (0 = clean), its noise, and
    whether the sample is conditional (probability ``cond_prob``; else nothing is known, s = 0).
    The loss is the mean squared error of the diffusion's target over the frames that are not
    given: the generated ones of a conditional sample, all frames of an unconditional one.
    Returns, as :meth:`GaussianDiffusion.training_loss`, ``loss`` (with graph), ``loss_per_sample``
    ``[B]`` (detached), ``t`` and ``cond_mask`` ``[B]`` (nothing is read back: no device sync).
    """
    window = window.float()
    b, length, device = window.shape[0], window.shape[2], window.device
    if tuple(known.shape) != (length,):
        raise ValueError(f"known must be [L] = [{length}]; got {tuple(known.shape)}")
    draw = generator.device if generator is not None else device
    t = torch.randint(0, diffusion.num_timesteps, (b,), generator=generator, device=draw).to(device)
    noise = torch.randn(window.shape, generator=generator, device=draw).to(device)
    level = torch.randint(0, max_level + 1, (b,), generator=generator, device=draw).to(device)
    cond_noise = torch.randn(window.shape, generator=generator, device=draw).to(device)
    keep = (torch.rand(b, generator=generator, device=draw) < cond_prob).to(device)
    level = torch.where(keep, level, 0)
    known_b = known.to(device)[None].expand(b, -1)
    cond = {"latent": perturb(diffusion, window, level, cond_noise), "known": known_b, "level": level}
    x_t = diffusion._q_sample(window, t, noise)
    pred = net(x_t, t, cond, keep).float()
    scored = (~(known_b & keep[:, None])).float()[:, None, :, None, None]  # [B, 1, L, 1, 1]
    err = (pred - diffusion._target(window, noise, t)) ** 2 * scored
    per_sample = err.flatten(1).sum(1) / (scored.flatten(1).sum(1) * window[0, :, 0].numel())
    return {"loss": per_sample.mean(), "loss_per_sample": per_sample.detach(), "t": t, "cond_mask": keep}
