"""The second stage's view of the frozen first stage: conditioning, targets and decoding.

Prediction protocol (no future leakage): a training example is a clip of ``K + T`` frames, the
first ``K`` observed. Every conditioning signal is computed from the observed frames only: they
are turned into a *pseudo-clip* of ``T`` frames (the last observed frame repeated, MOSO's trick;
with ``K >= T`` the last ``T`` observed frames) and encoded into scene, object and motion codes.
The diffusion target is the motion of the next ``T`` frames (the future clip). A prediction is
decoded from the observed scene and object codes and the sampled motion.

Latents are the continuous code vectors of the first stage (codebook rows), divided by a scale
factor so that they have unit standard deviation; the factor is measured on training data and
stored with the second stage's checkpoint. Sampled motion can be snapped back to the nearest
codebook rows before decoding (``snap_to_codebook``).
"""
from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import nn

from models.interface import pseudo_clip
from models.moso import COMPONENTS, MosoVQVAE


def encode_observed(first_stage: MosoVQVAE, observed: torch.Tensor) -> dict:
    """``first_stage.encode`` of the condition: the pseudo-clip of the observed frames.

    With ``anchor: before`` the last observed frame is the anchor (the frame the future motion
    is measured from, and the objects' source), and a mean-fusing scene encoder sees the observed
    frames themselves rather than the pseudo-clip, whose held last frame would print its sprites
    into the scene.
    """
    clip = pseudo_clip(observed, first_stage.frames)
    if first_stage.cfg.anchor != "before":
        return first_stage.encode(clip)
    scene_video = observed if first_stage.cfg.temporal_fusion == "mean" else None
    return first_stage.encode(clip, anchor=observed[:, :, -1], scene_video=scene_video)


def encode_future(first_stage: MosoVQVAE, future: torch.Tensor, observed: torch.Tensor) -> dict:
    """``first_stage.encode`` of the future clip, anchored at the last observed frame when the
    first stage measures motion from the frame before the clip."""
    anchor = observed[:, :, -1] if first_stage.cfg.anchor == "before" else None
    return first_stage.encode(future, anchor=anchor)


class ScaledLatentSpace(nn.Module):
    """A frozen first stage and the scale factor that gives its latents unit standard deviation
    (measured on training data, stored with the second stage's checkpoint)."""

    def __init__(self, first_stage: nn.Module, scale: Optional[float] = None) -> None:
        super().__init__()
        self.first_stage = first_stage.eval().requires_grad_(False)
        self.frames = first_stage.frames
        self.register_buffer("scale", torch.tensor(float("nan") if scale is None else float(scale)))

    def train(self, mode: bool = True) -> "ScaledLatentSpace":
        super().train(mode)
        self.first_stage.eval()  # frozen: never update its codebook or leave eval mode
        return self

    @property
    def has_scale(self) -> bool:
        return bool(torch.isfinite(self.scale))

    def _require_scale(self) -> torch.Tensor:
        if not self.has_scale:
            raise RuntimeError("the latent scale factor is not set: call fit_scale() on training data first")
        return self.scale

    @torch.no_grad()
    def fit_scale_to_codes(self, codes: list[torch.Tensor]) -> float:
        """Set the scale to the standard deviation of the values of unscaled ``codes``; returns it."""
        self.scale.fill_(float(torch.cat([v.flatten() for v in codes]).double().std()))
        return float(self.scale)


class SemanticLatentSpace(ScaledLatentSpace):
    """Frozen first stage + scale factor: observed frames -> condition, future frames -> target."""

    def __init__(self, first_stage: MosoVQVAE, scale: Optional[float] = None, snap_to_codebook: bool = False) -> None:
        super().__init__(first_stage, scale)
        self.snap_to_codebook = snap_to_codebook

    @torch.no_grad()
    def codes(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unscaled quantized code vectors of a ``T``-frame clip (eval-mode first stage)."""
        return self.first_stage.encode(clip)["codes"]

    @torch.no_grad()
    def fit_scale(self, clips: list[torch.Tensor], components: tuple[str, ...] = COMPONENTS) -> float:
        """Set the scale to the standard deviation of the code values of ``clips`` (of the
        ``components`` given: all of them, or e.g. only the diffused motion); returns it."""
        return self.fit_scale_to_codes([v for clip in clips for k, v in self.codes(clip).items() if k in components])

    @torch.no_grad()
    def condition(self, observed: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scaled scene/object/motion codes of the observed frames ``[B, C, K, H, W]``; for a first
        stage that decodes from the anchor frame's pixels, also ``anchor``: the last observed frame."""
        scale = self._require_scale()
        cond = {k: v / scale for k, v in encode_observed(self.first_stage, observed)["codes"].items()}
        if self.first_stage.decodes_from_anchor:
            cond["anchor"] = observed[:, :, -1]
        return cond

    @torch.no_grad()
    def target(self, future: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Scaled motion codes of the future clip ``[B, C, T, H, W]`` that follows ``observed`` (the diffusion's x0)."""
        if future.shape[2] != self.frames:
            raise ValueError(f"the future clip has {future.shape[2]} frames; the first stage encodes {self.frames}")
        return encode_future(self.first_stage, future, observed)["codes"]["motion"] / self._require_scale()

    @torch.no_grad()
    def from_indices(self, indices: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scaled codes from stored token indices (the token-folder fast path)."""
        scale = self._require_scale()
        return {k: v / scale for k, v in self.first_stage.codes_from_indices(indices).items()}

    @torch.no_grad()
    def snap(self, motion: torch.Tensor) -> torch.Tensor:
        """Nearest codebook rows of unscaled motion codes ``[B, D, T, H, W]``."""
        b, _, t, h, w = motion.shape
        flat = rearrange(motion, "b d t h w -> (b t h w) d")
        book = self.first_stage.quantizer.codes_from_indices(
            torch.arange(self.first_stage.codebook_size, device=motion.device)[None])[0].to(flat.dtype)
        nearest = torch.cdist(flat, book).argmin(dim=1)
        return rearrange(book[nearest], "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w)

    @torch.no_grad()
    def decode(self, condition: dict[str, torch.Tensor], motion: torch.Tensor,
               snap: Optional[bool] = None) -> torch.Tensor:
        """Frames ``[B, 3, T, H, W]`` from the observed scene/object and (scaled) predicted motion."""
        scale = self._require_scale()
        codes = {k: condition[k] * scale for k in ("scene", "object")}
        codes["motion"] = motion * scale
        if self.snap_to_codebook if snap is None else snap:
            codes["motion"] = self.snap(codes["motion"])
        return self.first_stage.decode(codes, anchor=condition.get("anchor")).clamp(-1, 1)


class SemanticTokens:
    """What ``--exp extract`` stores of a first stage: token index grids by array name.

    ``cond_frames`` 0: the scene, object and motion tokens of plain ``T``-frame clips. ``K > 0``:
    prediction pairs for the second stage from clips of ``K + T`` frames: the tokens of the
    pseudo-clip of the ``K`` observed frames (``cond_scene``, ``cond_object``, ``cond_motion``)
    and the motion of the next ``T`` (``future_motion``).
    """

    def __init__(self, first_stage: MosoVQVAE, cond_frames: int) -> None:
        self.first_stage, self.cond_frames = first_stage, int(cond_frames)
        shapes = first_stage.latent_shapes()
        # Array name -> per-clip grid shape (T', H', W').
        self.shapes = dict(shapes) if self.cond_frames == 0 else {
            **{f"cond_{k}": v for k, v in shapes.items()}, "future_motion": shapes["motion"]}
        self.codebook_size = first_stage.codebook_size

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Index grids ``[B, T', H', W']`` of a batch of clips, by array name."""
        if self.cond_frames == 0:
            return self.first_stage.encode(video)["indices"]
        k, t = self.cond_frames, self.first_stage.frames
        observed, future = video[:, :, :k], video[:, :, k:k + t]
        cond = encode_observed(self.first_stage, observed)["indices"]
        future_motion = encode_future(self.first_stage, future, observed)["indices"]["motion"]
        return {**{f"cond_{name}": v for name, v in cond.items()}, "future_motion": future_motion}

    @torch.no_grad()
    def codebook(self) -> torch.Tensor:
        """``[codebook_size, code_dim]``: the code vector of every index (on the first stage's device)."""
        device = next(self.first_stage.parameters()).device
        ids = torch.arange(self.codebook_size, device=device)[None]
        return self.first_stage.quantizer.codes_from_indices(ids)[0]

    def meta(self) -> dict:
        """The token folder's description of the codes (``meta.json``)."""
        return {"codebook_size": int(self.codebook_size), "code_dim": int(self.codebook().shape[1]),
                "quantizer": str(self.first_stage.cfg.quantizer),
                "latent_shapes": {k: list(v) for k, v in self.first_stage.latent_shapes().items()}}


__all__ = ["COMPONENTS", "SemanticLatentSpace", "SemanticTokens", "encode_future", "encode_observed", "pseudo_clip"]
