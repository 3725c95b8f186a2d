"""The U-Net trunk shared by the denoisers: named streams through one encoder-decoder ladder.

Each stream (e.g. scene, object, motion) has its own res blocks, spatial-only resampling and
skip connections, and its own resolution ladder (level ``l`` halves its H and W ``l`` times);
all streams share the channel width of a level, so attention blocks (supplied by the caller)
can concatenate their tokens. Only ``out_stream`` is returned: the other streams matter only
through attention, so the trunk builds their blocks up to the last attention block and no
further (no dead parameters, no wasted compute) and that last block updates ``out_stream`` alone.

Layout (ADM / DDPM style): encoder ``num_res_blocks`` res blocks per level (attention after
each at ``attn_levels``), a spatial downsample between levels; middle res-attention-res; decoder
``num_res_blocks + 1`` res blocks per level, each fed one skip, then a spatial upsample.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.unets.common import ConditionedTimeEmbedding, parse_latent_shapes
from models.unets.config import UNetConfig, coerce_config
from models.unets.layers import Downsample, ResBlock, Upsample

# make_attention(level, channels, query_streams) -> module with forward(h: dict, **attn_kwargs) -> dict
AttentionFactory = Callable[[int, int, tuple[str, ...]], nn.Module]


def level_widths(cfg: UNetConfig) -> list[int]:
    if not cfg.channel_mults or any(m <= 0 for m in cfg.channel_mults) or cfg.channels <= 0:
        raise ValueError(f"channels ({cfg.channels}) and channel_mults ({list(cfg.channel_mults)}) must be positive")
    if cfg.num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {cfg.num_res_blocks}")
    levels = len(cfg.channel_mults)
    bad = [lv for lv in cfg.attn_levels if not 0 <= lv < levels]
    if bad:
        raise ValueError(f"attn_levels {list(cfg.attn_levels)} out of range for {levels} levels (0..{levels - 1})")
    return [cfg.channels * m for m in cfg.channel_mults]


def check_spatial_ladder(name: str, height: int, width: int, levels: int) -> None:
    """Each level halves H and W: they must stay integers down to the deepest level."""
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"{name} latents of {height}x{width} cannot be halved {levels - 1} times "
            f"(channel_mults has {levels} levels); use fewer levels or other latent sizes")


class StreamUNet(nn.Module):
    """``forward(h, emb, **attn_kwargs) -> Tensor``: ``h`` maps stream -> features at width
    ``widths[0]``; ``emb`` ``[N, E]`` is the timestep embedding (N = batch of every stream);
    returns ``out_stream``'s decoded features, width ``widths[0]``, shape of its input."""

    def __init__(self, kernels: Mapping[str, Sequence[int]], out_stream: str, cfg: UNetConfig,
                 make_attention: AttentionFactory, emb_dim: int) -> None:
        super().__init__()
        if out_stream not in kernels:
            raise ValueError(f"out_stream '{out_stream}' is not one of the streams {list(kernels)}")
        widths = level_widths(cfg)
        self.out_stream = out_stream
        self.checkpointing = cfg.checkpointing
        streams = tuple(kernels)
        levels, attn_levels = len(widths), set(cfg.attn_levels)

        # 1) The op sequence with channel bookkeeping; 2) which streams each op needs.
        ops: list[dict[str, Any]] = []
        ch, skip_chs = widths[0], [widths[0]]
        for lv in range(levels):
            for _ in range(cfg.num_res_blocks):
                ops.append(dict(kind="res", level=lv, cin=ch, cout=widths[lv]))
                ch = widths[lv]
                if lv in attn_levels:
                    ops.append(dict(kind="attn", level=lv, cin=ch))
                ops.append(dict(kind="push"))
                skip_chs.append(ch)
            if lv < levels - 1:
                ops += [dict(kind="down", level=lv, cin=ch), dict(kind="push")]
                skip_chs.append(ch)
        deepest = levels - 1
        ops += [dict(kind="res", level=deepest, cin=ch, cout=ch), dict(kind="attn", level=deepest, cin=ch),
                dict(kind="res", level=deepest, cin=ch, cout=ch)]
        for lv in reversed(range(levels)):
            for _ in range(cfg.num_res_blocks + 1):
                ops.append(dict(kind="res_skip", level=lv, cin=ch + skip_chs.pop(), cout=widths[lv]))
                ch = widths[lv]
                if lv in attn_levels:
                    ops.append(dict(kind="attn", level=lv, cin=ch))
            if lv > 0:
                ops.append(dict(kind="up", level=lv, cin=ch))
        last_attn = max(i for i, op in enumerate(ops) if op["kind"] == "attn")

        self.plan: list[tuple[str, int, tuple[str, ...]]] = []  # (kind, module index or -1, streams)
        self.blocks = nn.ModuleList()
        for i, op in enumerate(ops):
            kind = op["kind"]
            active = streams if i < last_attn else (out_stream,)
            if kind == "push":
                self.plan.append((kind, -1, active))
                continue
            if kind == "attn":
                module: nn.Module = make_attention(op["level"], op["cin"], active)
            elif kind in ("res", "res_skip"):
                module = nn.ModuleDict({s: ResBlock(op["cin"], op["cout"], kernels[s], emb_dim, cfg.dropout,
                                                    cfg.scale_shift, cfg.norm_groups) for s in active})
            elif kind == "down":
                module = nn.ModuleDict({s: Downsample(op["cin"], kernels[s]) for s in active})
            else:
                module = nn.ModuleDict({s: Upsample(op["cin"], kernels[s]) for s in active})
            self.plan.append((kind, len(self.blocks), active))
            self.blocks.append(module)

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)

    def forward(self, h: dict[str, torch.Tensor], emb: torch.Tensor, **attn_kwargs: Any) -> torch.Tensor:
        skips = {s: [x] for s, x in h.items()}
        for kind, index, active in self.plan:
            if kind == "push":
                for s in active:
                    skips[s].append(h[s])
                continue
            block = self.blocks[index]
            if kind == "attn":
                h = self._call(block, h, **attn_kwargs)
            elif kind == "res":
                h = {s: self._call(block[s], h[s], emb) for s in active}
            elif kind == "res_skip":
                h = {s: self._call(block[s], torch.cat([h[s], skips[s].pop()], dim=1), emb) for s in active}
            else:
                h = {s: block[s](h[s]) for s in active}
        return h[self.out_stream]


def setup_denoiser(net: nn.Module, cfg: Any, config_cls: type, code_dim: int,
                   latent_shapes: Mapping[str, tuple[int, ...]], ladder_streams: tuple[str, ...] = ("motion",)
                   ) -> tuple[Any, dict[str, tuple[int, int, int]], list[int], int]:
    """What every denoiser's constructor starts with: the typed config, checked latent shapes, the
    level widths and the timestep embedding (``net.embed``). Returns ``(cfg, shapes, widths, emb_dim)``."""
    cfg = coerce_config(cfg, config_cls)
    net.cfg, net.code_dim = cfg, int(code_dim)
    net.latent_shapes = shapes = parse_latent_shapes(latent_shapes)
    widths = level_widths(cfg)
    for stream in ladder_streams:
        check_spatial_ladder(stream, shapes[stream][1], shapes[stream][2], len(widths))
    emb_dim = cfg.time_embed_dim or 4 * cfg.channels
    net.embed = ConditionedTimeEmbedding(cfg.channels, emb_dim)
    return cfg, shapes, widths, emb_dim
