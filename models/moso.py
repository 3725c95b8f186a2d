"""The MOSO-style first stage: a clip -> scene, object and motion tokens -> the clip.

Shapes for a ``[B, 3, T, H, W]`` clip, with ``d_*`` the number of 2x downsamplings:
scene ``[B, D, 1, H/2^d_scene, W/2^d_scene]``, object ``[B, D, 1, H/2^d_object, ...]``,
motion ``[B, D, T, H/2^d_motion, ...]``, all quantized against one shared codebook
(``D`` = code dimension).

Input decomposition (MOSO): with frames in [0, 1], the anchor difference
``d_t = 2 x_t - x_anchor - x_{t+1}`` feeds the motion encoder, where the anchor is one fixed
frame: the frame *before* the clip (``anchor: before``, MOSO; the caller passes it) or the
clip's first frame (``anchor: first``). The frame after the clip is not available, so the last
``d_{T-1} = x_{T-1} - x_anchor``. The mask ``m_t = 1[low <= max_rgb |d_t| <= high]`` splits each
frame into the object input ``m_t * x_t`` and the scene input ``x_t - m_t * x_t``. After
``full_input_step`` training steps both the scene and the object encoder see the raw frames
(MOSO's "full BG" switch).

Departures from MOSO, each a switch (why: docs/FIRST_STAGE.md): ``object_input: anchor``
encodes the objects from the anchor frame alone; ``merge: warp`` turns each frame's motion
features into a soft choice among local offsets that *moves* the object features before the
gated merge, so that motion places content instead of only choosing between scene and object;
``pixel_warp`` also moves the anchor frame's pixels by that warp and blends them into the output,
so decoding reads the anchor frame besides the codes; ``warp_keys: object`` lets the anchor's
content (the object features) take part in choosing each cell's offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from models import register_model
from models.blocks import DownStack, ResidualStack, TemporalSelfAttention, UpStack, resample_stack
from models.quantizers import build_quantizer


# MosoConfig fields that change how a built model runs, not its weights (may differ from a checkpoint's).
INFERENCE_ONLY = ("chunk_frames",)
# Fields that shape no parameter: a run may start from weights trained with other values of them
# (e.g. fine-tune a soft warp into a hard one).
WEIGHT_FREE = (*INFERENCE_ONLY, "warp_choice", "warp_temperature")


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
    temporal_position: bool = True  # learned temporal position embedding in the motion encoder (MOSO: none)
    anchor: str = "first"  # first: the clip's first frame | before: the frame before the clip (data: T+1 frames)
    object_input: str = "clip"  # clip: masked frames (MOSO) | anchor: the anchor frame, the content motion moves
    merge: str = "gate"  # gate (MOSO) | warp: motion moves the object features by local offsets, then the gate
    warp_window: int = 9  # warp: offsets within +-(window // 2) cells of the merge resolution
    # warp only. none: each frame's offset weights come from its motion features alone | object:
    # they also compare the motion features (a query) with the object features at every offset's
    # source cell (keys), so the decoder can tell from the anchor's content which cells a motion moves
    warp_keys: str = "none"
    # warp only. soft: each cell mixes its offsets by their softmax weights | hard: it copies from
    # its most likely offset (one-hot forward pass, the softmax's gradient backward: straight-through),
    # in both the coarse and the fine pixel warp, so moved pixels are copied, never blended
    warp_choice: str = "soft"
    # warp only: both warps' offset logits are divided by this before their softmax. Below 1 the
    # mixtures sharpen towards a copy of one offset (a blur of moved pixels costs temporal variance);
    # it shapes no weight, so a trained model can be decoded at another temperature (set_warp_temperature)
    warp_temperature: float = 1.0
    # difference: the anchor difference at full resolution (MOSO) | matching: at the merge resolution,
    # how well each offset in the warp window matches the anchor frame, beside the anchor difference
    motion_input: str = "difference"
    # motion_input: matching only: also, per cell of the merge resolution, how well each 1-pixel
    # offset of a 3x3 window around the cell's best-matching coarse offset matches, at full
    # resolution. The pooled costs tell a 2^down_content-pixel step; the fine warp's pixel has
    # to be read from these (without them the motion encoder sees only pooled frames)
    fine_matching: bool = False
    # warp only: the decoder also moves the anchor frame's *pixels* by the same warp (at full
    # resolution) and blends them into its output through a predicted mask, so sharp content
    # needs no round trip through the object tokens. Decoding then needs the anchor frame, which
    # in prediction is the last observed frame (needs anchor: before: no future frame is read).
    pixel_warp: bool = False
    # Inference only (no autograd): the per-frame 2D networks (the encoders' frame stacks, the decoder
    # from the merge on) run on at most this many frames of the batch at a time; 0: all at once.
    # Same FLOPs and codes, lower peak memory (docs/BENCHMARKS.md, issue 17). Training is not chunked:
    # backward keeps every chunk's activations, so it would save nothing.
    chunk_frames: int = 4
    # Residual blocks of the motion encoder after its temporal attention (0: res_depth, as every other
    # stack): more spatial context for choosing each cell's offset (docs/FIRST_STAGE.md, "A deeper
    # motion encoder").
    motion_res_depth: int = 0

    def __post_init__(self) -> None:
        for key, allowed in (("anchor", ("first", "before")), ("object_input", ("clip", "anchor")),
                             ("merge", ("gate", "warp")), ("temporal_fusion", ("concat", "mean")),
                             ("motion_input", ("difference", "matching")), ("warp_keys", ("none", "object")),
                             ("warp_choice", ("soft", "hard"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.vqvae.{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if self.motion_res_depth < 0:
            raise ValueError(f"model.vqvae.motion_res_depth must be >= 0 (0: res_depth); got {self.motion_res_depth}")
        if self.chunk_frames < 0:
            raise ValueError(f"model.vqvae.chunk_frames must be >= 0 (0: no chunks); got {self.chunk_frames}")
        if self.warp_window < 1 or self.warp_window % 2 == 0:
            raise ValueError(f"model.vqvae.warp_window must be a positive odd number; got {self.warp_window}")
        if not self.warp_temperature > 0:
            raise ValueError(f"model.vqvae.warp_temperature must be positive; got {self.warp_temperature}")
        for key, off in (("warp_keys", "none"), ("warp_choice", "soft"), ("warp_temperature", 1.0)):
            if getattr(self, key) != off and self.merge != "warp":
                raise ValueError(f"model.vqvae.{key}: {getattr(self, key)} needs merge: warp (got merge: {self.merge})")
        if self.fine_matching and self.motion_input != "matching":
            raise ValueError(f"model.vqvae.fine_matching needs motion_input: matching (got {self.motion_input})")
        if self.pixel_warp and (self.merge != "warp" or self.anchor != "before"):
            raise ValueError("model.vqvae.pixel_warp needs merge: warp and anchor: before "
                             f"(got merge: {self.merge}, anchor: {self.anchor})")


def anchor_difference(video01: torch.Tensor, anchor01: torch.Tensor) -> torch.Tensor:
    """MOSO's ``2 x_t - x_anchor - x_{t+1}`` of ``[B, C, T, H, W]`` with anchor ``[B, C, H, W]``.

    The frame after the clip is unknown, so the last frame stands in for it.
    """
    following = torch.cat([video01[:, :, 1:], video01[:, :, -1:]], dim=2)
    return 2 * video01 - anchor01[:, :, None] - following


def local_matching(video01: torch.Tensor, anchor01: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, window^2, T, H, W]``: minus the mean absolute RGB difference between each frame's pixel
    and the anchor's pixel at every offset of the window (borders repeated). Which offset matches
    best is where that pixel's content was in the anchor frame: the motion a warp has to undo.
    """
    b, _, t, h, w = video01.shape
    pad = window // 2
    padded = F.pad(anchor01, (pad, pad, pad, pad), mode="replicate")
    shifted = rearrange(F.unfold(padded, window), "b (c k) (h w) -> b c k h w", c=3, h=h)
    frames = rearrange(video01, "b c t h w -> b c t 1 h w")
    return -rearrange((frames - shifted[:, :, None]).abs().mean(dim=1), "b t k h w -> b k t h w")


# The fine pixel warp's window (1-pixel offsets), which fine_matching scores for the motion encoder.
FINE_WINDOW = 3


def fine_matching(video01: torch.Tensor, anchor01: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """``[B, FINE_WINDOW^2, T, h, w]``: per cell of ``coarse``'s resolution, :func:`local_matching` at
    full resolution over the 1-pixel offsets of the fine window around the cell's best coarse offset, averaged
    over the cell's pixels. ``coarse`` ``[B, window^2, T, h, w]``: :func:`local_matching` of the
    pooled frames (offsets of one cell, i.e. ``H // h`` pixels)."""
    b, k, t, h, _ = coarse.shape
    step, window = video01.shape[-1] // h, int(round(k**0.5))
    best = rearrange(F.one_hot(coarse.argmax(dim=1), k).to(video01.dtype), "b t h w k -> b t k h w")
    moved = move_by(anchor01, best, window, dilation=step, border="replicate")  # [(b t), 3, H, W]
    costs = local_matching(rearrange(video01, "b c t h w -> (b t) c 1 h w"), moved, FINE_WINDOW)[:, :, 0]
    return rearrange(F.avg_pool2d(costs, step), "(b t) k h w -> b k t h w", b=b)


def move_by(x: torch.Tensor, weights: torch.Tensor, window: int, dilation: int = 1,
            border: str = "constant") -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` moved by offset ``weights`` ``[B, T, window^2, H/d, W/d]`` ->
    ``[B*T, C, H, W]`` (see :meth:`OffsetWarp.move`).

    Each weight serves its cell's d x d pixels without being copied to them: at 64x64 with d = 4 the
    upsampled weights were 16 times the pixels' patches, and moving them cost more than the sum."""
    c, h = x.shape[1], weights.shape[-2]
    pad = dilation * (window // 2)
    padded = F.pad(x, (pad, pad, pad, pad), mode=border)
    patches = rearrange(F.unfold(padded, window, dilation=dilation), "b (c k) (h i w j) -> b c k h i w j",
                        c=c, h=h, i=dilation, j=dilation)
    moved = torch.einsum("bckhiwj,btkhw->btchiwj", patches, weights)
    return rearrange(moved, "b t c h i w j -> (b t) c (h i) (w j)")


def motion_mask(diff: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``[B, 1, T, H, W]`` mask of pixels whose strongest channel change lies in [low, high]."""
    strength = diff.abs().amax(dim=1, keepdim=True)
    return ((strength >= low) & (strength <= high)).to(diff.dtype)


def decompose_inputs(video: torch.Tensor, anchor: torch.Tensor, low: float, high: float,
                     full_input: bool) -> dict[str, torch.Tensor]:
    """The three encoder inputs of a clip in [-1, 1] and its anchor frame (see the module docstring)."""
    diff = anchor_difference((video + 1) / 2, (anchor + 1) / 2)
    if full_input:
        return {"scene": video, "object": video, "motion": diff}
    mask = motion_mask(diff, low, high)
    return {"scene": video * (1 - mask), "object": video * mask, "motion": diff}


def chunks_of(size: int, chunk: int) -> list[slice]:
    """Slices covering ``range(size)`` in runs of ``chunk``; one slice when ``chunk`` is 0 or covers
    ``size``, or while autograd records (chunks would all be kept for backward)."""
    if chunk <= 0 or chunk >= size or torch.is_grad_enabled():
        return [slice(0, size)]
    return [slice(start, min(start + chunk, size)) for start in range(0, size, chunk)]


def distinct_rows(frames: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """For rows ``[N, ...]``: (the mask of rows that differ from their predecessor, each row's index
    among those), or None when no row repeats its predecessor. A prediction's pseudo-clip repeats
    the last observed frame ``T - K`` times, and so do MOSO's encoder inputs of those frames."""
    if frames.shape[0] < 2 or type(frames) is not torch.Tensor or frames.device.type == "meta" \
            or torch.compiler.is_compiling():  # fake / meta tensors and tracing have no values to compare
        return None
    same = (frames[1:] == frames[:-1]).flatten(1).all(dim=1)
    if not bool(same.any()):
        return None
    keep = torch.cat([same.new_ones(1), ~same])
    return keep, keep.cumsum(0) - 1


def per_frame(fn: nn.Module, frames: torch.Tensor, chunk: int, reuse_repeats: bool = False) -> torch.Tensor:
    """``fn`` of frames ``[N, C, H, W]`` (one image per row), run on ``chunk`` rows at a time.

    ``reuse_repeats`` (outside autograd): a row equal to the one before it is not recomputed; its
    predecessor's output is copied (``fn`` acts on each row alone, so the result is the same)."""
    distinct = distinct_rows(frames) if reuse_repeats and not torch.is_grad_enabled() else None
    if distinct is not None:
        keep, index = distinct
        return per_frame(fn, frames[keep], chunk)[index]
    parts = chunks_of(frames.shape[0], chunk)
    return fn(frames) if len(parts) == 1 else torch.cat([fn(frames[part]) for part in parts])


class ClipEncoder(nn.Module):
    """Scene or object encoder: per-frame stack, temporal fusion, residual stack -> one map."""

    def __init__(self, cfg: MosoConfig, n_down: int, frames: int) -> None:
        super().__init__()
        self.fusion, self.chunk, self.reuse_repeats = cfg.temporal_fusion, cfg.chunk_frames, True
        self.frame_stack = DownStack(3, cfg.hidden, n_down)
        fused_in = cfg.hidden * frames if self.fusion == "concat" else cfg.hidden
        self.fuse = nn.Conv2d(fused_in, cfg.hidden, 3, padding=1)
        self.res = ResidualStack(cfg.hidden, cfg.res_depth)
        self.to_code = nn.Conv2d(cfg.hidden, cfg.code_dim, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        feats = per_frame(self.frame_stack, rearrange(video, "b c t h w -> (b t) c h w"), self.chunk, self.reuse_repeats)
        if self.fusion == "concat":
            feats = rearrange(feats, "(b t) c h w -> b (t c) h w", b=b)
        else:
            feats = rearrange(feats, "(b t) c h w -> b t c h w", b=b).mean(dim=1)
        return rearrange(self.to_code(self.res(self.fuse(feats))), "b d h w -> b d 1 h w")


class MotionEncoder(nn.Module):
    """Per-frame stack, temporal self-attention at every location, residual stack -> T maps."""

    def __init__(self, cfg: MosoConfig) -> None:
        super().__init__()
        self.chunk, self.reuse_repeats = cfg.chunk_frames, True
        if cfg.motion_input == "matching":  # input at the merge resolution: matching costs + difference
            inputs = cfg.warp_window**2 + (FINE_WINDOW**2 if cfg.fine_matching else 0) + 3
            self.frame_stack = DownStack(inputs, cfg.hidden, cfg.down_motion - cfg.down_content)
        else:
            self.frame_stack = DownStack(3, cfg.hidden, cfg.down_motion)
        self.attn = TemporalSelfAttention(cfg.hidden, cfg.attn_heads, cfg.max_frames, cfg.temporal_position)
        self.res = ResidualStack(cfg.hidden, cfg.motion_res_depth or cfg.res_depth)
        self.to_code = nn.Conv2d(cfg.hidden, cfg.code_dim, 1)

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        b = diff.shape[0]
        feats = per_frame(self.frame_stack, rearrange(diff, "b c t h w -> (b t) c h w"), self.chunk, self.reuse_repeats)
        feats = self.attn(rearrange(feats, "(b t) c h w -> b c t h w", b=b))
        feats = per_frame(self.to_codes, rearrange(feats, "b c t h w -> (b t) c h w"), self.chunk, self.reuse_repeats)
        return rearrange(feats, "(b t) d h w -> b d t h w", b=b)

    def to_codes(self, feats: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.res(feats))


class GatedMerge(nn.Module):
    """Gate ``g`` from [motion; scene; object] at three scales; ``g * scene + (1 - g) * object``.

    With ``with_motion`` (MOSO's merge) the motion features also join the gate and the output
    convolution, so that they can move appearance around and not only choose between scene and
    object. Without it (``merge: warp``, where the object features arrive already moved) motion
    has no side path: it acts through the warp or not at all, so the decoder cannot learn to damp
    it as noise early in training.
    """

    def __init__(self, channels: int, with_motion: bool = True) -> None:
        super().__init__()
        self.with_motion = with_motion
        inputs = 3 if with_motion else 2
        self.gates = nn.ModuleList([nn.Conv2d(inputs * channels, channels, 3, padding=1) for _ in range(3)])
        self.out = nn.Conv2d((inputs - 1) * channels, channels, 3, padding=1)

    def forward(self, motion: torch.Tensor, scene: torch.Tensor, obj: torch.Tensor,
                force_gate: Optional[float] = None) -> torch.Tensor:
        """``force_gate`` (diagnostics): 1 keeps only the scene, 0 only the objects."""
        extra = [motion] if self.with_motion else []
        if force_gate is None:
            stacked = torch.cat([*extra, scene, obj], dim=1)
            size = stacked.shape[-2:]
            logits = 0
            for level, conv in enumerate(self.gates):
                x = F.avg_pool2d(stacked, 2**level) if level else stacked
                logits = logits + F.interpolate(conv(x), size=size, mode="nearest")
            gate = torch.sigmoid(logits)
        else:
            gate = torch.full_like(scene, float(force_gate))
        fused = gate * scene + (1 - gate) * obj
        return self.out(torch.cat([fused, *extra], dim=1))


def one_hot_largest(weights: torch.Tensor) -> torch.Tensor:
    """Offset weights ``[B, T, K, H, W]`` replaced by a one-hot choice of their largest entry."""
    return F.one_hot(weights.argmax(dim=2), weights.shape[2]).movedim(-1, 2).to(weights.dtype)


class OffsetWarp(nn.Module):
    """Moves a clip's object features for every frame: each output cell is a softmax-weighted sum
    of the input cells within ``window x window`` around it, weights predicted from that frame's
    motion features. Unlike a flow field sampled bilinearly, every offset in the window gets a
    gradient, so displacements of several cells are learnable from the start.
    """

    def __init__(self, channels: int, window: int, key_dim: int = 0, hard: bool = False,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.window, self.hard, self.temperature = window, hard, temperature
        self.to_logits = nn.Conv2d(channels, window * window, 3, padding=1)
        with torch.no_grad():  # start close to the identity (the centre offset dominates), but let
            # motion steer it from the first step: a zero weight would give the motion encoder no gradient
            self.to_logits.bias.zero_()
            self.to_logits.bias[window * window // 2] = 4.0
        # key_dim > 0 (warp_keys: object): a local attention term, query from the motion features,
        # keys from the content at each offset's source cell. The query starts at zero, so a new
        # model starts as the motion-only warp and learns how much to read the content.
        self.to_query = nn.Conv2d(channels, key_dim, 1) if key_dim else None
        self.to_key = nn.Conv2d(channels, key_dim, 1) if key_dim else None
        if self.to_query is not None:
            nn.init.zeros_(self.to_query.weight)
            nn.init.zeros_(self.to_query.bias)

    def weights(self, motion: torch.Tensor, frames: int, content: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, T, window^2, H, W]`` offset weights from motion features ``[B*T, C, H, W]`` (and,
        with keys, the clip's content features ``[B, C, H, W]`` that the warp moves)."""
        logits = rearrange(self.to_logits(motion), "(b t) k h w -> b t k h w", t=frames)
        if self.to_query is not None:
            if content is None:
                raise ValueError("a warp with content keys needs the content features it moves")
            logits = logits + self.content_logits(motion, content, frames)
        soft = (logits / self.temperature).softmax(dim=2)
        if not self.hard:
            return soft
        hard = one_hot_largest(soft)
        return hard + soft - soft.detach() if torch.is_grad_enabled() else hard

    def content_logits(self, motion: torch.Tensor, content: torch.Tensor, frames: int) -> torch.Tensor:
        """``[B, T, window^2, H, W]``: scaled dot products of each cell's motion query with the
        content key ``window // 2`` cells around it (zero outside the frame)."""
        query = rearrange(self.to_query(motion), "(b t) d h w -> b t d h w", t=frames)
        keys = self.to_key(content)
        d, h = keys.shape[1], keys.shape[2]
        pad = self.window // 2
        patches = rearrange(F.unfold(F.pad(keys, (pad, pad, pad, pad)), self.window),
                            "b (d k) (h w) -> b d k h w", d=d, h=h)
        return torch.einsum("btdhw,bdkhw->btkhw", query, patches) / d**0.5

    def move(self, x: torch.Tensor, weights: torch.Tensor, dilation: int = 1, border: str = "constant") -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` moved by ``weights`` ``[B, T, window^2, H, W]`` -> ``[B*T, C, H, W]``.

        ``dilation`` d applies weights made at 1/d of ``x``'s resolution (upsampled nearest) with
        offsets of d pixels: the same displacement field, read at a finer grid. ``border``: what
        lies outside ``x`` (``constant``: zeros, for features; ``replicate``: the edge, for pixels).
        """
        return move_by(x, weights, self.window, dilation, border)

    def forward(self, obj: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``obj`` ``[B, C, H, W]`` (one map per clip), ``motion`` ``[B*T, C, H, W]`` -> ``[B*T, C, H, W]``."""
        return self.move(obj, self.weights(motion, motion.shape[0] // obj.shape[0], obj))


class Decoded(NamedTuple):
    """What :meth:`MergeDecoder.frames_and_weights` decodes; training reads the warps' parts."""
    frames: torch.Tensor  # [B, 3, T, H, W]
    weights: Optional[torch.Tensor]  # the coarse warp's offset weights [B, T, window^2, h, w]
    fine_weights: Optional[torch.Tensor]  # pixel_warp: the fine 3x3 warp's weights [B, T, 9, H, W]


class MergeDecoder(nn.Module):
    def __init__(self, cfg: MosoConfig) -> None:
        super().__init__()
        hid, self.chunk = cfg.hidden, cfg.chunk_frames
        self.from_code = nn.ModuleDict({k: nn.Conv2d(cfg.code_dim, hid, 1) for k in ("scene", "object", "motion")})
        self.to_content = nn.ModuleDict({
            "scene": resample_stack(hid, cfg.down_scene, cfg.down_content),
            "object": resample_stack(hid, cfg.down_object, cfg.down_content),
            "motion": resample_stack(hid, cfg.down_motion, cfg.down_content),
        })
        hard, temperature = cfg.warp_choice == "hard", cfg.warp_temperature
        self.warp = (OffsetWarp(hid, cfg.warp_window, key_dim=16 if cfg.warp_keys == "object" else 0, hard=hard,
                                temperature=temperature) if cfg.merge == "warp" else None)
        self.merge = GatedMerge(hid, with_motion=cfg.merge == "gate")
        self.res = ResidualStack(hid, cfg.res_depth)
        self.up = UpStack(hid, cfg.down_content)
        self.to_rgb = nn.Conv2d(hid, 3, 3, padding=1)
        # pixel_warp: per pixel, how much of the moved anchor frame to keep over the decoded colour;
        # and a 3x3 warp at full resolution after the warp's 2^down_content-pixel steps, so that
        # every whole-pixel displacement is reachable (from the decoder's features and the motion's)
        self.to_keep = nn.Conv2d(hid, 1, 3, padding=1) if cfg.pixel_warp else None
        self.fine = OffsetWarp(2 * hid, FINE_WINDOW, hard=hard, temperature=temperature) if cfg.pixel_warp else None

    def _content(self, name: str, code: torch.Tensor) -> torch.Tensor:
        return self.to_content[name](self.from_code[name](code))

    def move_image(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``image`` ``[B, C, h, w]`` at the merge resolution moved by the warp ``weights`` of
        :meth:`frames_and_weights`: ``[B, C, T, h, w]``.

        Training compares the moved anchor frame with each frame (``model.warp_l1_weight``): a
        direct, strong signal that teaches the motion codes the warp before the decoder can read them.
        """
        return rearrange(self.warp.move(image, weights), "(b t) c h w -> b c t h w", b=image.shape[0])

    def forward(self, scene: torch.Tensor, obj: torch.Tensor, motion: torch.Tensor,
                force_gate: Optional[float] = None, anchor: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.frames_and_weights(scene, obj, motion, force_gate, anchor).frames

    def frames_and_weights(self, scene: torch.Tensor, obj: torch.Tensor, motion: torch.Tensor,
                           force_gate: Optional[float] = None, anchor: Optional[torch.Tensor] = None) -> "Decoded":
        """Frames ``[B, 3, T, H, W]``, the warp's offset weights (None without ``merge: warp``) and,
        with ``pixel_warp``, the fine warp's weights (:class:`Decoded`).

        ``anchor`` ``[B, 3, H, W]``: the frame the motion is measured from (``pixel_warp`` only).
        With ``force_gate`` (scene-only / objects-only diagnostics) the moved pixels are left out."""
        b, _, t = motion.shape[:3]
        weights = None
        scene_f = self._content("scene", scene[:, :, 0])
        object_f = self._content("object", obj[:, :, 0])
        motion_f = self._content("motion", rearrange(motion, "b d t h w -> (b t) d h w"))
        if self.warp is not None:
            weights = self.warp.weights(motion_f, t, object_f)
        if self.to_keep is not None and force_gate is None and anchor is None:
            raise ValueError("a pixel_warp first stage decodes from its codes *and* the anchor frame: pass anchor=")
        motion_f = rearrange(motion_f, "(b t) c h w -> b t c h w", b=b)
        parts = chunks_of(t, max(1, self.chunk // b))  # chunk_frames counts the frames of the whole batch
        chunks = [self._frames(motion_f[:, part], scene_f, object_f, None if weights is None else weights[:, part],
                               force_gate, anchor) for part in parts]
        frames, fine = zip(*chunks)
        return Decoded(_joined(frames, dim=2), weights, None if fine[0] is None else _joined(fine, dim=1))

    def _frames(self, motion_f: torch.Tensor, scene_f: torch.Tensor, object_f: torch.Tensor,
                weights: Optional[torch.Tensor], force_gate: Optional[float], anchor: Optional[torch.Tensor]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Frames ``[B, 3, t, H, W]`` of ``t`` frames' motion features ``[B, t, C, h, w]``, the clip's
        scene and object features ``[B, C, h, w]`` and the frames' warp ``weights``; with the pixel
        warp also the fine warp's weights ``[B, t, 9, H, W]`` (else None)."""
        b, t = motion_f.shape[:2]
        motion_f = rearrange(motion_f, "b t c h w -> (b t) c h w")
        scene_f = repeat(scene_f, "b c h w -> (b t) c h w", t=t)
        if weights is not None:
            object_f = self.warp.move(object_f, weights)
        else:
            object_f = repeat(object_f, "b c h w -> (b t) c h w", t=t)
        hidden = self.up(self.res(self.merge(motion_f, scene_f, object_f, force_gate)))
        frames = self.to_rgb(hidden)
        fine = None
        if self.to_keep is not None and force_gate is None:
            dilation = anchor.shape[-1] // scene_f.shape[-1]
            moved = self.warp.move(anchor.to(frames.dtype), weights, dilation=dilation, border="replicate")
            motion_up = F.interpolate(motion_f, scale_factor=dilation, mode="nearest") if dilation > 1 else motion_f
            fine = self.fine.weights(torch.cat([hidden, motion_up], dim=1), 1)  # one frame per map
            moved = self.fine.move(moved, fine, border="replicate")
            keep = torch.sigmoid(self.to_keep(hidden))
            frames = keep * moved + (1 - keep) * frames
            fine = rearrange(fine, "(b t) 1 k h w -> b t k h w", b=b)
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b), fine


def _joined(parts: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    """The chunks of one decoding put back together (a single chunk as it is: no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


COMPONENTS = ("scene", "object", "motion")


@register_model("moso_vqvae")
class MosoVQVAE(nn.Module):
    """Scene/object/motion VQ-VAE. ``forward`` returns a dict of named outputs."""

    def __init__(self, cfg: MosoConfig, frames: int, resolution: int) -> None:
        super().__init__()
        if frames > cfg.max_frames:
            raise ValueError(f"clips of {frames} frames need model.max_frames >= {frames}")
        deepest = max(cfg.down_scene, cfg.down_object, cfg.down_motion, cfg.down_content)
        if cfg.motion_input == "matching" and cfg.down_motion < cfg.down_content:
            raise ValueError("motion_input: matching needs down_motion >= down_content (it starts at the merge resolution)")
        if resolution % 2**deepest:
            raise ValueError(f"resolution {resolution} is not divisible by 2^{deepest} (the deepest downsampling)")
        self.cfg, self.frames, self.resolution = cfg, frames, resolution
        self.encoders = nn.ModuleDict({
            "scene": ClipEncoder(cfg, cfg.down_scene, frames),
            "object": ClipEncoder(cfg, cfg.down_object, 1 if cfg.object_input == "anchor" else frames),
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

    def set_chunk_frames(self, chunk: int) -> None:
        """Change ``cfg.chunk_frames`` of a built model (an inference setting; weights unchanged)."""
        if chunk < 0:
            raise ValueError(f"chunk_frames must be >= 0 (0: no chunks); got {chunk}")
        self.cfg.chunk_frames = int(chunk)
        for module in (*self.encoders.values(), self.decoder):
            module.chunk = int(chunk)

    def set_warp_temperature(self, temperature: float) -> None:
        """Change ``cfg.warp_temperature`` of a built model: both warps' softmax temperature
        (weights unchanged). MosoConfig's own checks apply (positive, ``merge: warp`` only)."""
        replace(self.cfg, warp_temperature=float(temperature))  # validated as a config would be
        self.cfg.warp_temperature = float(temperature)  # in place: the modules share this config
        for warp in (self.decoder.warp, self.decoder.fine):
            if warp is not None:
                warp.temperature = float(temperature)

    def set_reuse_repeats(self, reuse: bool) -> None:
        """Whether the encoders compute a frame equal to the one before it once (an inference setting:
        results unchanged, a pseudo-clip's encoding costs K frames instead of T; on by default)."""
        for module in self.encoders.values():
            module.reuse_repeats = bool(reuse)

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-clip shapes ``(T', H', W')`` of the scene, object and motion token grids."""
        r, c = self.resolution, self.cfg
        return {
            "scene": (1, r >> c.down_scene, r >> c.down_scene),
            "object": (1, r >> c.down_object, r >> c.down_object),
            "motion": (self.frames, r >> c.down_motion, r >> c.down_motion),
        }

    def encode_continuous(self, video: torch.Tensor, step: Optional[int] = None, anchor: Optional[torch.Tensor] = None,
                          scene_video: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Pre-quantization latents ``[B, D, T', H', W']`` per component.

        ``anchor`` ``[B, 3, H, W]``: the frame before the clip (default: the clip's first frame).
        ``scene_video``: other frames of the same scene for the scene encoder (mean fusion only),
        e.g. the observed frames when ``video`` is a pseudo-clip that repeats the last one.
        """
        c = self.cfg
        anchor = video[:, :, 0] if anchor is None else anchor
        full = step is None or step >= c.full_input_step
        inputs = decompose_inputs(video, anchor, c.mask_low, c.mask_high, full_input=full)
        if scene_video is not None:
            if c.temporal_fusion != "mean":
                raise ValueError("scene_video needs temporal_fusion: mean (concat fuses exactly T frames)")
            inputs["scene"] = decompose_inputs(scene_video, anchor, c.mask_low, c.mask_high, full_input=full)["scene"]
        if c.object_input == "anchor":
            inputs["object"] = anchor[:, :, None]
        if c.motion_input == "matching":
            inputs["motion"] = self._matching_input(video, anchor, inputs["motion"])
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

    def _matching_input(self, video: torch.Tensor, anchor: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
        """Matching costs against the anchor and the anchor difference, pooled to the merge resolution."""
        pool, video01, anchor01 = self.merge_resolution, (video + 1) / 2, (anchor + 1) / 2
        matching = local_matching(pool(video01), pool(anchor01), self.cfg.warp_window)
        fine = [fine_matching(video01, anchor01, matching)] if self.cfg.fine_matching else []
        # x10: mean absolute differences are small numbers; the conv after it sees a usable range
        return torch.cat([10 * matching, *(10 * f for f in fine), pool(diff)], dim=1)

    def encode(self, video: torch.Tensor, step: Optional[int] = None, anchor: Optional[torch.Tensor] = None,
               scene_video: Optional[torch.Tensor] = None) -> dict[str, dict[str, torch.Tensor]]:
        codes, indices, loss = self.quantize(self.encode_continuous(video, step, anchor, scene_video))
        return {"codes": codes, "indices": indices, "quant_loss": loss}

    @property
    def decodes_from_anchor(self) -> bool:
        """Whether decoding reads the anchor frame's pixels besides the codes (``pixel_warp``)."""
        return self.decoder.to_keep is not None

    def decode(self, codes: dict[str, torch.Tensor], force_gate: Optional[float] = None,
               anchor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Frames from code vectors; ``force_gate`` 1/0 decodes the scene/objects alone (diagnostics).
        ``anchor``: the frame before the clip, needed when ``decodes_from_anchor``."""
        return self.decoder(codes["scene"], codes["object"], codes["motion"], force_gate, anchor)

    def decode_with_warp(self, codes: dict[str, torch.Tensor], anchor: torch.Tensor) -> Decoded:
        """:meth:`decode` and the warps' offset weights, computed once (training reads both)."""
        return self.decoder.frames_and_weights(codes["scene"], codes["object"], codes["motion"], None, anchor)

    def codes_from_indices(self, indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        codes = {}
        for k, ids in indices.items():
            t, h, w = ids.shape[1:]
            # The quantizers take token sequences [B, N]; FSQ would read a 4D index grid as an image.
            flat = self.quantizer.codes_from_indices(rearrange(ids, "b t h w -> b (t h w)"))
            codes[k] = rearrange(flat, "b (t h w) d -> b d t h w", t=t, h=h, w=w).contiguous()
        return codes

    def decode_indices(self, indices: dict[str, torch.Tensor], anchor: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.decode(self.codes_from_indices(indices), anchor=anchor)

    @torch.no_grad()
    def warp_targets(self, video: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """``[B, T, h, w]``: per cell of the merge resolution, the index of the warp offset whose
        anchor content matches each frame best (the model-free oracle's choice at the warp's own
        resolution; ``model.warp_ce_weight`` teaches the warp to commit to it)."""
        pool = self.merge_resolution
        matching = local_matching(pool((video + 1) / 2), pool((anchor + 1) / 2), self.cfg.warp_window)
        return matching.argmax(dim=1)

    def copy_error_map(self, anchor: torch.Tensor, video: torch.Tensor, weights: torch.Tensor,
                       fine_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per cell and frame ``[B, T, h, w]``, the squared error (mean over colours) of one copy of
        the anchor drawn from the warps' weights: its mean is ``model.warp_copy_weight``'s loss.

        It equals the squared error of the warps' blend plus the variance, under the weights, of
        what the offsets copy. So it is zero only when all the weight sits on right copies, whereas
        the blend's error is also zero for wrong offsets that average right. With ``pixel_warp`` (``fine_weights``
        ``[B, T, 9, H, W]``; the map is then at full resolution) the draw is of the displacement
        the decoder composes: a coarse offset k in ``2^down_content``-pixel steps, then a fine one
        j, i.e. the anchor pixel ``p + j + 2^down_content k``, so a coarse step that the fine warp
        completes is not paid as an error. The fine weights weigh the draw but take no gradient from
        it: with one, the fine warp chose its centre offset almost everywhere within 250-500 steps
        (two runs, docs/FIRST_STAGE.md). Without ``pixel_warp``: the coarse warp's copies at the merge
        resolution. ``anchor`` ``[B, 3, H, W]``, ``video`` ``[B, 3, T, H, W]``, full resolution,
        ``weights`` ``[B, T, window^2, h, w]``."""
        if fine_weights is None:
            anchor, video = self.merge_resolution(anchor), self.merge_resolution(video)
        step = anchor.shape[-1] // weights.shape[-1]
        # E|copy - x|^2 = E|copy|^2 - 2 E[copy].x + |x|^2: the warps move the anchor and its squared norm
        stacked = torch.cat([anchor, anchor.square().sum(dim=1, keepdim=True)], dim=1)
        moved = self.decoder.warp.move(stacked, weights, dilation=step, border="replicate")
        if fine_weights is not None:  # held fixed: its gradient drove the fine warp to its centre offset
            moved = self.decoder.fine.move(moved, rearrange(fine_weights.detach(), "b t k h w -> (b t) 1 k h w"),
                                           border="replicate")
        mean_copy, mean_square = moved[:, :3], moved[:, 3]
        x = rearrange(video, "b c t h w -> (b t) c h w")
        error = (mean_square - 2 * (mean_copy * x).sum(dim=1) + x.square().sum(dim=1)) / x.shape[1]
        return rearrange(error.clamp_min(0), "(b t) h w -> b t h w", b=video.shape[0])

    def merge_resolution(self, frames: torch.Tensor) -> torch.Tensor:
        """``[..., H, W]`` frames average-pooled to the resolution the decoder merges (and warps) at."""
        factor = 2**self.cfg.down_content
        return F.avg_pool2d(frames.flatten(0, -3), factor).unflatten(0, frames.shape[:-2]) if factor > 1 else frames

    def forward(self, video: torch.Tensor, step: Optional[int] = None, anchor: Optional[torch.Tensor] = None) -> dict:
        """``recon`` and the codes; in training with ``merge: warp`` also ``warped_anchor`` and its
        target ``frames_small`` (the anchor frame moved by each frame's warp, and the frames, at the
        merge resolution) and the warp's offset weights ``warp_weights``, which only the training
        loss reads."""
        encoded = self.encode(video, step, anchor)
        anchor = video[:, :, 0] if anchor is None else anchor
        decoded = self.decode_with_warp(encoded["codes"], anchor)
        out = {"recon": decoded.frames, **encoded}
        if self.training and decoded.weights is not None:
            out["warp_weights"] = decoded.weights
            out["warped_anchor"] = self.decoder.move_image(self.merge_resolution(anchor), decoded.weights)
            out["frames_small"] = self.merge_resolution(video)
            if decoded.fine_weights is not None:
                out["fine_weights"] = decoded.fine_weights
        return out
