"""PVDM's denoiser: one 2D U-Net over the three latent planes, its training loss and guidance.

Input and output are flat latents ``[B, E, N]`` in the autoencoder's layout
(:class:`models.pvdm_autoencoder.PlaneLayout`). The condition, the previous clip's clean latent
(zeros for an unconditional pass), is concatenated on channels, then the latent is split into its
planes ``hw`` ``[H', W']``, ``tw`` ``[S, W']`` and ``th`` ``[S, H']``.

Plane layout. PVDM's code does not tile the planes into one image: it runs every U-Net block on
each plane separately with the same weights (a plane is a 2D image; every axis, time included,
is halved at each level), and after every block concatenates the three planes' tokens into one
sequence for a 1D self-attention, so the planes exchange information at every resolution. This
module does the same: res blocks, resampling, per-plane self-attention (``attn_levels``) and the
joint attention over the three planes (``cross_levels``; always in the middle block) share their
weights across planes. One addition (``plane_positions``, on by default; not in PVDM): the joint
attention's tokens get Fourier features of their coordinates along the plane's two axes and zeros
for the axis the plane projects out, so attention can tell the planes and positions apart.

Interface: ``forward(x_t, t, cond=None, cond_mask=None)``, ``cond_mask`` bool ``[B]`` False = zero
condition, so the net is a ``model_fn`` of :class:`models.diffusion.GaussianDiffusion`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from models import register_model
from models.diffusion.guidance import GuidedDenoiser
from models.pvdm_autoencoder import PLANES, PlaneLayout, SelfAttention
from models.unets.common import keep_where
from models.unets.config import UNetConfig, coerce_config
from models.unets.layers import (Downsample, ResBlock, TimestepEmbedder, Upsample, fourier_positions, group_norm,
                                 heads_for, zero_)
from models.unets.trunk import check_spatial_ladder, level_widths

if TYPE_CHECKING:
    from models.diffusion.gaussian import GaussianDiffusion

KERNEL = (3, 3)


@dataclass
class PVDMUNetConfig(UNetConfig):
    """PVDM's released U-Net by default: width 256, mults 1-2-4-4, 2 res blocks, attention at the
    first three levels, 8 heads at level 0."""

    channels: int = 256
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    attn_levels: list[int] = field(default_factory=lambda: [0, 1, 2])  # per-plane self-attention
    attn_head_dim: int = 32
    # Levels whose res blocks are followed by attention over the three planes' tokens together
    # (PVDM: every level); the middle block always has it.
    cross_levels: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    plane_positions: bool = True  # position features on the joint attention's tokens (not in PVDM)


@dataclass
class PVDMObjectiveConfig:
    """The weights of PVDM's objective and sampling (``model.pvdm`` of a second-stage config)."""

    lam: float = 0.3  # lambda: weight of the conditional term; 1 - lambda on the unconditional one
    w: float = 0.0  # guidance: eps = (1 + w) eps(z_t, z_prev) - w eps(z_t, 0); 0 = conditional only

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"model.pvdm.lam must be in [0, 1]; got {self.lam}")


def plane_position_features(layout: PlaneLayout, num_freqs: int) -> dict[str, torch.Tensor]:
    """Per plane ``[a*b, 6 * num_freqs]``: (t, y, x) Fourier features of its tokens, zeros for the
    axis it projects out (:func:`~models.unets.layers.fourier_positions` lays out t, y, x blocks)."""
    s, h, w, k = layout.frames, layout.height, layout.width, 2 * num_freqs
    tw = fourier_positions(s, 1, w, num_freqs, temporal=True)
    th = fourier_positions(s, h, 1, num_freqs, temporal=True)
    tw[:, k:2 * k] = 0.0
    th[:, 2 * k:] = 0.0
    return {"hw": fourier_positions(1, h, w, num_freqs, temporal=False), "tw": tw, "th": th}


class PlaneAttention(nn.Module):
    """Residual self-attention over planes ``{name: [B, C, a, b]}``, one set of weights for all.

    ``joint``: the three planes' tokens form one sequence (information crosses planes); else each
    plane attends within itself. ``positions`` (from :func:`plane_position_features`) are mapped by
    a learned linear layer and added to the normalised tokens.
    """

    def __init__(self, channels: int, head_dim: int, norm_groups: int, joint: bool,
                 positions: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        super().__init__()
        self.joint = joint
        self.norm = group_norm(channels, norm_groups)
        self.attn = SelfAttention(channels, heads_for(channels, head_dim))
        zero_(self.attn.out)  # starts as the identity
        self.pos_proj = None
        if positions is not None:
            for name in PLANES:
                self.register_buffer(f"pos_{name}", positions[name], persistent=False)
            self.pos_proj = nn.Linear(positions["hw"].shape[1], channels)

    def tokens(self, name: str, x: torch.Tensor) -> torch.Tensor:
        seq = rearrange(self.norm(x), "b c x y -> b (x y) c")
        if self.pos_proj is not None:
            seq = seq + self.pos_proj(getattr(self, f"pos_{name}").to(seq.dtype))
        return seq

    def forward(self, planes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seqs = {name: self.tokens(name, x) for name, x in planes.items()}
        groups = [PLANES] if self.joint else [(name,) for name in PLANES]
        out = {}
        for group in groups:
            attended = self.attn(torch.cat([seqs[name] for name in group], dim=1))
            for name, part in zip(group, attended.split([seqs[name].shape[1] for name in group], dim=1)):
                x = planes[name]
                out[name] = x + rearrange(part, "b (x y) c -> b c x y", x=x.shape[2])
        return out


class PlaneStage(nn.Module):
    """A res block on each plane (shared weights), then optional per-plane and joint attention."""

    def __init__(self, cin: int, cout: int, emb_dim: int, cfg: PVDMUNetConfig, self_attn: bool,
                 cross_attn: bool, positions: Optional[Mapping[str, torch.Tensor]]) -> None:
        super().__init__()
        self.res = ResBlock(cin, cout, KERNEL, emb_dim, cfg.dropout, cfg.scale_shift, cfg.norm_groups)
        self.attn = PlaneAttention(cout, cfg.attn_head_dim, cfg.norm_groups, False) if self_attn else None
        self.cross = PlaneAttention(cout, cfg.attn_head_dim, cfg.norm_groups, True, positions) if cross_attn else None

    def forward(self, planes: dict[str, torch.Tensor], emb: torch.Tensor,
                skips: Optional[dict[str, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
        if skips is not None:
            planes = {name: torch.cat([x, skips[name]], dim=1) for name, x in planes.items()}
        h = {name: self.res(x, emb) for name, x in planes.items()}
        for attention in (self.attn, self.cross):
            if attention is not None:
                h = attention(h)
        return h


class PlaneResample(nn.Module):
    """Halve (``Downsample``) or double (``Upsample``) every plane along both axes, shared weights."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        self.op = Downsample(channels, KERNEL) if down else Upsample(channels, KERNEL)

    def forward(self, planes: dict[str, torch.Tensor], emb: torch.Tensor,
                skips: Optional[dict[str, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
        return {name: self.op(x) for name, x in planes.items()}


@register_model("pvdm_unet")
class PVDMUNet(nn.Module):
    """``forward(x_t, t, cond=None, cond_mask=None) -> [B, E, N]`` over latents of ``layout``."""

    config_class = PVDMUNetConfig
    # The second-stage method a config with ``model.net: pvdm_unet`` runs (tools/experiments/pvdm.py).
    method = "pvdm"

    def __init__(self, cfg: PVDMUNetConfig | Mapping[str, Any] | None, latent_channels: int,
                 layout: PlaneLayout) -> None:
        super().__init__()
        cfg = coerce_config(cfg if cfg is not None else PVDMUNetConfig(), PVDMUNetConfig)
        self.cfg, self.latent_channels, self.layout = cfg, int(latent_channels), layout
        widths = level_widths(cfg)
        levels = len(widths)
        bad = [lv for lv in cfg.cross_levels if not 0 <= lv < levels]
        if bad:
            raise ValueError(f"cross_levels {list(cfg.cross_levels)} out of range for {levels} levels")
        for name, (a, b) in layout.shapes.items():
            check_spatial_ladder(f"the {name} plane's", a, b, levels)
        emb_dim = cfg.time_embed_dim or 4 * cfg.channels
        self.time_embed = TimestepEmbedder(cfg.channels, emb_dim)
        self.checkpointing = cfg.checkpointing

        def stage(cin: int, cout: int, level: int, self_attn: bool, cross_attn: bool) -> PlaneStage:
            positions = (plane_position_features(layout.downsampled(2 ** level), cfg.pos_freqs)
                         if cross_attn and cfg.plane_positions else None)
            return PlaneStage(cin, cout, emb_dim, cfg, self_attn, cross_attn, positions)

        attn, cross = set(cfg.attn_levels), set(cfg.cross_levels)
        self.input = nn.Conv2d(2 * self.latent_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        ch, skip_chs = widths[0], [widths[0]]
        for lv, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(stage(ch, width, lv, lv in attn, lv in cross))
                ch = width
                skip_chs.append(ch)
            if lv < levels - 1:
                self.down.append(PlaneResample(ch, down=True))
                skip_chs.append(ch)
        self.middle = nn.ModuleList([stage(ch, ch, levels - 1, True, True), stage(ch, ch, levels - 1, False, False)])
        self.up = nn.ModuleList()
        for lv in reversed(range(levels)):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(stage(ch + skip_chs.pop(), widths[lv], lv, lv in attn, lv in cross))
                ch = widths[lv]
            if lv > 0:
                self.up.append(PlaneResample(ch, down=False))
        self.out = nn.Sequential(group_norm(ch, cfg.norm_groups), nn.SiLU(),
                                 zero_(nn.Conv2d(ch, self.latent_channels, 3, padding=1)))

    def _run(self, block: nn.Module, h: dict, emb: torch.Tensor, skips: Optional[dict] = None) -> dict:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, skips, use_reentrant=False)
        return block(h, emb, skips)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: Optional[torch.Tensor] = None,
                cond_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x_t`` ``[B, E, N]`` noisy latents; ``t`` ``[B]`` (or a scalar); ``cond`` the previous clip's
        clean latent like ``x_t`` (None: zeros); ``cond_mask`` ``[B]`` False: zeros for that sample."""
        want = (self.latent_channels, self.layout.numel)
        if x_t.dim() != 3 or tuple(x_t.shape[1:]) != want:
            raise ValueError(f"x_t must be [B, {want[0]}, {want[1]}]; got shape {tuple(x_t.shape)}")
        b = x_t.shape[0]
        if cond is None:
            cond = torch.zeros_like(x_t)
        elif cond.shape != x_t.shape:
            raise ValueError(f"cond must be shaped like x_t {tuple(x_t.shape)}; got {tuple(cond.shape)}")
        if cond_mask is not None:
            if tuple(cond_mask.shape) != (b,):
                raise ValueError(f"cond_mask must be [B] = [{b}]; got shape {tuple(cond_mask.shape)}")
            cond = keep_where(cond, cond_mask.to(device=x_t.device, dtype=torch.bool))
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(b) if t.dim() == 0 else t
        emb = self.time_embed(t)

        h = {name: self.input(x) for name, x in self.layout.split(torch.cat([x_t, cond.to(x_t.dtype)], dim=1)).items()}
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            skips.append(h)
        for block in self.middle:
            h = self._run(block, h, emb)
        for block in self.up:
            h = self._run(block, h, emb, skips.pop() if isinstance(block, PlaneStage) else None)
        return self.layout.merge({name: self.out(x) for name, x in h.items()})


def pvdm_guided_eps(net: nn.Module, z_t: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor,
                    w: float) -> torch.Tensor:
    """PVDM's guidance: ``(1 + w) * net(z_t, t, cond) - w * net(z_t, t, 0)`` (float32).

    w = 0 is the conditional output, w = -1 the unconditional one. This is the repository's
    classifier-free guidance (:class:`~models.diffusion.guidance.GuidedDenoiser`,
    ``uncond + g (cond - uncond)``) with ``g = 1 + w``: use ``diffusion.guidance = 1 + w`` when
    sampling with :meth:`GaussianDiffusion.sample`. It applies to any parametrisation (eps or v).
    """
    b = z_t.shape[0]
    t = torch.as_tensor(t, device=z_t.device)
    t = t.expand(b) if t.dim() == 0 else t
    return GuidedDenoiser(net, cond, 1.0 + float(w), b, z_t.device)(z_t, t)


def pvdm_training_loss(net: nn.Module, diffusion: "GaussianDiffusion", z0: torch.Tensor, z_prev: torch.Tensor,
                       lam: float, *, t: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None,
                       generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """PVDM's objective ``lam * |target - net(z_t, t, z_prev)|^2 + (1 - lam) * |target - net(z_t, t, 0)|^2``
    (mean squared error; ``target`` is eps, or v for a v-prediction ``diffusion``).

    Both terms share ``t`` and ``noise`` (drawn, t first, from ``generator`` or the global RNG when
    not given) and run as one ``2B`` batch, so both are always computed and returned. The noise
    schedule and target are ``diffusion``'s (its ``q_sample`` and ``training_target``). PVDM's released code picks one
    of the two terms per step instead (probability ``lam`` for the conditional one), which is the
    same objective in expectation: ``GaussianDiffusion.training_loss`` with ``cond_drop_prob =
    1 - lam`` does that per sample, at half the cost.

    Returns ``loss`` (scalar, with graph), ``loss_cond``, ``loss_uncond`` (detached) and ``t``.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1]; got {lam}")
    z0 = z0.float()
    if z_prev.shape != z0.shape:
        raise ValueError(f"z_prev must be shaped like z0 {tuple(z0.shape)}; got {tuple(z_prev.shape)}")
    b, device = z0.shape[0], z0.device
    draw = generator.device if generator is not None else device
    drawn_t = torch.randint(0, diffusion.num_timesteps, (b,), generator=generator, device=draw) if t is None else None
    drawn_noise = torch.randn(z0.shape, generator=generator, device=draw) if noise is None else None
    # Given timesteps are checked (a read of their values); drawn ones are valid and are not read,
    # so the step has no device sync (and runs on fake tensors, scripts/measure_memory.py).
    t = drawn_t.to(device) if t is None else diffusion.timesteps_for(t, z0).to(device)
    noise = drawn_noise.to(device) if noise is None else noise.to(device, torch.float32)
    if noise.shape != z0.shape:
        raise ValueError(f"noise must be shaped like z0 {tuple(z0.shape)}; got {tuple(noise.shape)}")
    z_t = diffusion._q_sample(z0, t, noise)
    target = diffusion._target(z0, noise, t)
    mask = torch.cat([torch.ones(b, dtype=torch.bool, device=device), torch.zeros(b, dtype=torch.bool, device=device)])
    pred = net(torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([z_prev, z_prev]).float(), mask).float()
    loss_cond, loss_uncond = ((pred - torch.cat([target, target])) ** 2).flatten(1).mean(1).chunk(2)
    loss_cond, loss_uncond = loss_cond.mean(), loss_uncond.mean()
    return {"loss": lam * loss_cond + (1.0 - lam) * loss_uncond, "loss_cond": loss_cond.detach(),
            "loss_uncond": loss_uncond.detach(), "t": t}
