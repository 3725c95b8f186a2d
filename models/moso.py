"""The MOSO-style first stage: a clip -> scene, object and motion tokens -> the clip.

Shapes for a ``[B, 3, T, H, W]`` clip, with ``d_*`` the number of 2x downsamplings:
scene ``[B, D, 1, H/2^d_scene, W/2^d_scene]``, object ``[B, D, 1, H/2^d_object, ...]``,
motion ``[B, D, T, H/2^d_motion, ...]``, all quantized against one shared codebook
(``D`` = code dimension).

Input decomposition (MOSO): with frames in [0, 1], the second-order difference
``d_t = 2 x_t - x_{t-1} - x_{t+1}`` feeds the motion encoder, and the mask
``m_t = 1[low <= max_rgb |d_t| <= high]`` splits each frame into the object input ``m_t * x_t``
and the scene input ``x_t - m_t * x_t``. Clip ends: the clip is padded by repeating its first
and last frame, so ``d_0 = x_0 - x_1`` and ``d_{T-1} = x_{T-1} - x_{T-2}`` (a one-sided
difference, which still marks the pixels that move). After ``full_input_step`` training steps
both the scene and the object encoder see the raw frames (MOSO's "full BG" switch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from models import register_model
from models.blocks import DownStack, ResidualStack, TemporalSelfAttention, UpStack, resample_stack
from models.quantizers import build_quantizer


@dataclass
class MosoConfig:
    name: str = "moso_vqvae"
    hidden: int = 64  # channels of every encoder/decoder stage
    res_depth: int = 2  # residual blocks per residual stack
    down_scene: int = 2  # 2x downsamplings per component (MOSO: 2/2/3/2 at 64x64, 3/4/5/3 at 256x256)
    down_object: int = 2
    down_motion: int = 3
    down_content: int = 2  # resolution at which the decoder merges the three components
    code_dim: int = 8  # small code dimensions make the second stage's job easier
    quantizer: str = "vq"  # vq | fsq
    codebook_size: int = 1024  # vq only; for fsq it is the product of fsq_levels
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    vq_decay: float = 0.99
    commitment: float = 0.25
    dead_code_threshold: float = 1.0  # EMA cluster size under which a code is restarted
    kmeans_init: bool = False
    attn_heads: int = 4
    temporal_fusion: str = "concat"  # concat (MOSO: frames stacked on channels) | mean
    mask_low: float = 0.1
    mask_high: float = 0.9
    full_input_step: int = 5000  # from this step on, scene and object encoders see raw frames
    max_frames: int = 16


def second_order_difference(video01: torch.Tensor) -> torch.Tensor:
    """``2 x_t - x_{t-1} - x_{t+1}`` along T of ``[B, C, T, H, W]``, ends padded by repetition."""
    padded = torch.cat([video01[:, :, :1], video01, video01[:, :, -1:]], dim=2)
    return 2 * padded[:, :, 1:-1] - padded[:, :, :-2] - padded[:, :, 2:]


def motion_mask(diff: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``[B, 1, T, H, W]`` mask of pixels whose strongest channel change lies in [low, high]."""
    strength = diff.abs().amax(dim=1, keepdim=True)
    return ((strength >= low) & (strength <= high)).to(diff.dtype)


def decompose_inputs(video: torch.Tensor, low: float, high: float, full_input: bool) -> dict[str, torch.Tensor]:
    """The three encoder inputs of a clip in [-1, 1] (see the module docstring)."""
    diff = second_order_difference((video + 1) / 2)
    if full_input:
        return {"scene": video, "object": video, "motion": diff}
    mask = motion_mask(diff, low, high)
    return {"scene": video * (1 - mask), "object": video * mask, "motion": diff}


class ClipEncoder(nn.Module):
    """Scene or object encoder: per-frame stack, temporal fusion, residual stack -> one map."""

    def __init__(self, cfg: MosoConfig, n_down: int, frames: int) -> None:
        super().__init__()
        self.fusion = cfg.temporal_fusion
        self.frame_stack = DownStack(3, cfg.hidden, n_down)
        fused_in = cfg.hidden * frames if self.fusion == "concat" else cfg.hidden
        self.fuse = nn.Conv2d(fused_in, cfg.hidden, 3, padding=1)
        self.res = ResidualStack(cfg.hidden, cfg.res_depth)
        self.to_code = nn.Conv2d(cfg.hidden, cfg.code_dim, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        feats = self.frame_stack(rearrange(video, "b c t h w -> (b t) c h w"))
        if self.fusion == "concat":
            feats = rearrange(feats, "(b t) c h w -> b (t c) h w", b=b)
        else:
            feats = rearrange(feats, "(b t) c h w -> b t c h w", b=b).mean(dim=1)
        return rearrange(self.to_code(self.res(self.fuse(feats))), "b d h w -> b d 1 h w")


class MotionEncoder(nn.Module):
    """Per-frame stack, temporal self-attention at every location, residual stack -> T maps."""

    def __init__(self, cfg: MosoConfig) -> None:
        super().__init__()
        self.frame_stack = DownStack(3, cfg.hidden, cfg.down_motion)
        self.attn = TemporalSelfAttention(cfg.hidden, cfg.attn_heads, cfg.max_frames)
        self.res = ResidualStack(cfg.hidden, cfg.res_depth)
        self.to_code = nn.Conv2d(cfg.hidden, cfg.code_dim, 1)

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        b = diff.shape[0]
        feats = self.frame_stack(rearrange(diff, "b c t h w -> (b t) c h w"))
        feats = self.attn(rearrange(feats, "(b t) c h w -> b c t h w", b=b))
        feats = self.to_code(self.res(rearrange(feats, "b c t h w -> (b t) c h w")))
        return rearrange(feats, "(b t) d h w -> b d t h w", b=b)


class GatedMerge(nn.Module):
    """Gate ``g`` from [motion; scene; object] at three scales; ``g * scene + (1 - g) * object``.

    The motion features are concatenated to the gated content as well, so that they can move
    appearance around and not only choose between scene and object.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.ModuleList([nn.Conv2d(3 * channels, channels, 3, padding=1) for _ in range(3)])
        self.out = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, motion: torch.Tensor, scene: torch.Tensor, obj: torch.Tensor,
                force_gate: Optional[float] = None) -> torch.Tensor:
        """``force_gate`` (diagnostics): 1 keeps only the scene, 0 only the objects."""
        if force_gate is None:
            stacked = torch.cat([motion, scene, obj], dim=1)
            size = stacked.shape[-2:]
            logits = 0
            for level, conv in enumerate(self.gates):
                x = F.avg_pool2d(stacked, 2**level) if level else stacked
                logits = logits + F.interpolate(conv(x), size=size, mode="nearest")
            gate = torch.sigmoid(logits)
        else:
            gate = torch.full_like(scene, float(force_gate))
        fused = gate * scene + (1 - gate) * obj
        return self.out(torch.cat([fused, motion], dim=1))


class MergeDecoder(nn.Module):
    def __init__(self, cfg: MosoConfig) -> None:
        super().__init__()
        hid = cfg.hidden
        self.from_code = nn.ModuleDict({k: nn.Conv2d(cfg.code_dim, hid, 1) for k in ("scene", "object", "motion")})
        self.to_content = nn.ModuleDict({
            "scene": resample_stack(hid, cfg.down_scene, cfg.down_content),
            "object": resample_stack(hid, cfg.down_object, cfg.down_content),
            "motion": resample_stack(hid, cfg.down_motion, cfg.down_content),
        })
        self.merge = GatedMerge(hid)
        self.res = ResidualStack(hid, cfg.res_depth)
        self.up = UpStack(hid, cfg.down_content)
        self.to_rgb = nn.Conv2d(hid, 3, 3, padding=1)

    def _content(self, name: str, code: torch.Tensor) -> torch.Tensor:
        return self.to_content[name](self.from_code[name](code))

    def forward(self, scene: torch.Tensor, obj: torch.Tensor, motion: torch.Tensor,
                force_gate: Optional[float] = None) -> torch.Tensor:
        b, _, t = motion.shape[:3]
        scene_f = self._content("scene", scene[:, :, 0])
        object_f = self._content("object", obj[:, :, 0])
        motion_f = self._content("motion", rearrange(motion, "b d t h w -> (b t) d h w"))
        scene_f = repeat(scene_f, "b c h w -> (b t) c h w", t=t)
        object_f = repeat(object_f, "b c h w -> (b t) c h w", t=t)
        frames = self.to_rgb(self.up(self.res(self.merge(motion_f, scene_f, object_f, force_gate))))
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)


COMPONENTS = ("scene", "object", "motion")


@register_model("moso_vqvae")
class MosoVQVAE(nn.Module):
    """Scene/object/motion VQ-VAE. ``forward`` returns a dict of named outputs."""

    def __init__(self, cfg: MosoConfig, frames: int, resolution: int) -> None:
        super().__init__()
        if frames > cfg.max_frames:
            raise ValueError(f"clips of {frames} frames need model.max_frames >= {frames}")
        deepest = max(cfg.down_scene, cfg.down_object, cfg.down_motion, cfg.down_content)
        if resolution % 2**deepest:
            raise ValueError(f"resolution {resolution} is not divisible by 2^{deepest} (the deepest downsampling)")
        self.cfg, self.frames, self.resolution = cfg, frames, resolution
        self.encoders = nn.ModuleDict({
            "scene": ClipEncoder(cfg, cfg.down_scene, frames),
            "object": ClipEncoder(cfg, cfg.down_object, frames),
            "motion": MotionEncoder(cfg),
        })
        self.quantizer = build_quantizer(
            cfg.quantizer, cfg.code_dim, cfg.codebook_size, decay=cfg.vq_decay, commitment=cfg.commitment,
            dead_code_threshold=cfg.dead_code_threshold, kmeans_init=cfg.kmeans_init, fsq_levels=list(cfg.fsq_levels),
        )
        self.decoder = MergeDecoder(cfg)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-clip shapes ``(T', H', W')`` of the scene, object and motion token grids."""
        r, c = self.resolution, self.cfg
        return {
            "scene": (1, r >> c.down_scene, r >> c.down_scene),
            "object": (1, r >> c.down_object, r >> c.down_object),
            "motion": (self.frames, r >> c.down_motion, r >> c.down_motion),
        }

    def encode_continuous(self, video: torch.Tensor, step: Optional[int] = None) -> dict[str, torch.Tensor]:
        """Pre-quantization latents ``[B, D, T', H', W']`` per component."""
        full = step is None or step >= self.cfg.full_input_step
        inputs = decompose_inputs(video, self.cfg.mask_low, self.cfg.mask_high, full_input=full)
        return {k: self.encoders[k](inputs[k]) for k in COMPONENTS}

    def quantize(self, latents: dict[str, torch.Tensor]) -> tuple[dict, dict, torch.Tensor]:
        """Quantize all components in one call, so the shared codebook gets one EMA update per step."""
        flat = [rearrange(latents[k], "b d t h w -> b (t h w) d") for k in COMPONENTS]
        sizes = [f.shape[1] for f in flat]
        quantized, indices, loss = self.quantizer(torch.cat(flat, dim=1))
        if not self.training:
            # Bit-exact with decoding stored indices (the straight-through sum x + (q - x) is not).
            quantized = self.quantizer.codes_from_indices(indices)
        codes, ids = {}, {}
        for k, q, i in zip(COMPONENTS, quantized.split(sizes, dim=1), indices.split(sizes, dim=1)):
            t, h, w = latents[k].shape[2:]
            # contiguous: decoding must not depend on which path produced the codes (memory layout
            # changes the conv kernels' summation order, hence the last bits).
            codes[k] = rearrange(q, "b (t h w) d -> b d t h w", t=t, h=h, w=w).contiguous()
            ids[k] = rearrange(i, "b (t h w) -> b t h w", t=t, h=h, w=w)
        return codes, ids, loss

    def encode(self, video: torch.Tensor, step: Optional[int] = None) -> dict[str, dict[str, torch.Tensor]]:
        codes, indices, loss = self.quantize(self.encode_continuous(video, step))
        return {"codes": codes, "indices": indices, "quant_loss": loss}

    def decode(self, codes: dict[str, torch.Tensor], force_gate: Optional[float] = None) -> torch.Tensor:
        """Frames from code vectors; ``force_gate`` 1/0 decodes the scene/objects alone (diagnostics)."""
        return self.decoder(codes["scene"], codes["object"], codes["motion"], force_gate)

    def codes_from_indices(self, indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        codes = {}
        for k, ids in indices.items():
            t, h, w = ids.shape[1:]
            # The quantizers take token sequences [B, N]; FSQ would read a 4D index grid as an image.
            flat = self.quantizer.codes_from_indices(rearrange(ids, "b t h w -> b (t h w)"))
            codes[k] = rearrange(flat, "b (t h w) d -> b d t h w", t=t, h=h, w=w).contiguous()
        return codes

    def decode_indices(self, indices: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.decode(self.codes_from_indices(indices))

    def forward(self, video: torch.Tensor, step: Optional[int] = None) -> dict:
        encoded = self.encode(video, step)
        return {"recon": self.decode(encoded["codes"]), **encoded}
