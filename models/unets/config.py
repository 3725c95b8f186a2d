"""Configuration dataclasses of the second-stage denoisers (OmegaConf-structured friendly).

``UNetConfig`` holds the trunk fields every variant shares; each variant adds its own. Each
denoiser class names its schema as ``config_class``, so the experiment checks ``model.unet``
against the schema of the denoiser ``model.net`` picks (a new denoiser brings its own dataclass).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Mapping, TypeVar

C = TypeVar("C")


@dataclass
class UNetConfig:
    channels: int = 64  # base width (level 0)
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 3])  # width multiplier per level
    num_res_blocks: int = 2  # per level in the encoder (the decoder has one more)
    # Levels (0 = the latents' own resolution, each next level halves H and W) with attention after
    # every res block; the middle block (deepest level) always has attention.
    attn_levels: list[int] = field(default_factory=lambda: [1, 2])
    attn_head_dim: int = 64  # channels per attention head; heads = width // attn_head_dim
    dropout: float = 0.0  # inside res blocks
    time_embed_dim: int = 0  # 0 -> 4 * channels
    norm_groups: int = 32  # GroupNorm groups (gcd with the width, so any width is legal)
    scale_shift: bool = True  # FiLM timestep conditioning (ADM); False: additive
    pos_freqs: int = 6  # Fourier frequencies per axis of the attention position features
    checkpointing: bool = False  # activation checkpointing of res/attention blocks in training


@dataclass
class RSVPS2Config(UNetConfig):
    motion_kernel: list[int] = field(default_factory=lambda: [3, 3, 3])  # (t, h, w) conv kernel, motion stream
    # One-map scene/object streams: a 1-frame temporal extent, so the filters never slide in time.
    static_kernel: list[int] = field(default_factory=lambda: [1, 3, 3])


@dataclass
class RSVPS1Config(UNetConfig):
    frame_embed: bool = True  # add a learned frame-index embedding to the timestep embedding


@dataclass
class RSVPMConfig(UNetConfig):
    motion_kernel: list[int] = field(default_factory=lambda: [3, 3, 3])
    context_channels: int = 256  # width of the scene/object context tokens
    context_blocks: int = 2  # res blocks of the scene/object context encoder
    context_max_size: int = 16  # context maps are halved until H, W <= this (token count)
    self_attention: bool = True  # space-time self-attention before the cross-attention


def coerce_config(cfg: Any, cls: type[C]) -> C:
    """``cfg`` as a ``cls``: an instance passes through; a mapping, OmegaConf node or other
    dataclass is converted (unknown keys are an error naming them)."""
    if isinstance(cfg, cls):
        return cfg
    if is_dataclass(cfg) and not isinstance(cfg, type):
        data = asdict(cfg)
    elif isinstance(cfg, Mapping) or hasattr(cfg, "items"):
        try:
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        except ImportError:  # pragma: no cover - omegaconf is a project dependency
            data = dict(cfg)
    else:
        raise TypeError(f"expected a {cls.__name__} or a mapping, got {type(cfg).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**data)
