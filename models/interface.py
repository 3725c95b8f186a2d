"""The two interfaces of a video prediction method, and what every method gets from them.

- A :class:`FirstStage` turns a clip into a latent and back.
- A :class:`Predictor` samples the frames that follow the observed ones.

``validate.py``, ``--exp extract``, ``train.py`` and ``scripts/bench.py`` talk only to these
(and to the experiment registry that loads them from checkpoints, :mod:`tools.pretrained`), so a
new method is its modules, an experiment entry and configs (docs/SECOND_STAGE.md, "Adding a
method"). Video tensors are ``[B, 3, T, H, W]`` in ``[-1, 1]``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class FirstStage(Protocol):
    """A clip autoencoder: ``decode(encode(clip)["codes"])`` is a clip of the same shape.

    ``context``: keyword tensors a method encodes or decodes a clip relative to, e.g. MOSO's
    ``anchor`` (the frame before the clip); a clip needs none to be encoded on its own.
    """

    frames: int  # T, the frames of the clips it encodes
    resolution: int  # H = W of those frames

    def encode(self, clip: torch.Tensor, **context: Any) -> Mapping[str, Any]:
        """Named outputs; ``codes`` is the latent (a tensor or a dict of named tensors)."""

    def decode(self, codes: Any, **context: Any) -> torch.Tensor:
        """The clip ``[B, 3, T, H, W]`` of a latent."""


@runtime_checkable
class Predictor(Protocol):
    """A trained method that predicts one clip of ``frames`` frames from ``cond_frames`` observed ones."""

    frames: int  # T, frames per predicted clip
    cond_frames: int  # K, the observed frames it was trained with
    resolution: int  # H = W

    def predict(self, observed: torch.Tensor, generator: Optional[torch.Generator] = None,
                **sample_options: Any) -> torch.Tensor:
        """``[B, 3, K, H, W]`` observed frames -> ``[B, 3, T, H, W]`` sampled future frames.

        ``generator`` supplies every random draw (same generator state, same frames);
        ``sample_options`` are the method's own (e.g. sampler, steps, guidance)."""

    def reconstruct(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The true future clip through the method's first stage, given the observed frames: what a
        perfect second stage would predict (the first stage's ceiling)."""

    def settings(self, **sample_options: Any) -> dict[str, Any]:
        """The choices ``sample_options`` resolve to, for the record (metrics.json)."""


def pseudo_clip(observed: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, C, K, H, W]`` observed frames -> ``[B, C, frames, H, W]`` built from them alone: the
    last observed frame repeated (MOSO's trick); with ``K >= frames``, the last ``frames`` frames."""
    k = observed.shape[2]
    if k >= frames:
        return observed[:, :, k - frames:]
    pad = observed[:, :, -1:].expand(-1, -1, frames - k, -1, -1)
    return torch.cat([observed, pad], dim=2)


@torch.no_grad()
def rollout(predictor: Predictor, observed: torch.Tensor, pred_frames: int, generator: torch.Generator,
            **sample_options: Any) -> torch.Tensor:
    """``pred_frames`` frames after ``observed``, one clip at a time, each predicted from the latest
    ``K`` frames, observed or predicted (PVDM's Algorithm 1 with each method's conditioning).

    A predictor with long-horizon logic of its own (LVDM's hierarchy) defines
    ``rollout(observed, pred_frames, generator, **sample_options)``, and that is used instead."""
    own = getattr(predictor, "rollout", None)
    if callable(own):
        return own(observed, pred_frames, generator, **sample_options)
    k = observed.shape[2]
    frames = observed
    while frames.shape[2] < k + pred_frames:
        window = frames[:, :, -k:]
        frames = torch.cat([frames, predictor.predict(window, generator, **sample_options)], dim=2)
    return frames[:, :, k:k + pred_frames]


@torch.no_grad()
def first_stage_ceiling(predictor: Predictor, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """:meth:`Predictor.reconstruct` of the future frames, clip by clip (each clip given the ``K``
    frames before it, observed or true): the best any second stage on this first stage can do."""
    t = predictor.frames
    clips = []
    for start in range(0, future.shape[2], t):
        window = torch.cat([observed, future[:, :, :start]], dim=2)[:, :, -observed.shape[2]:]
        target = future[:, :, start:start + t]
        if target.shape[2] < t:  # a last partial clip: pad with its last frame
            target = pseudo_clip(target, t)
        clips.append(predictor.reconstruct(window, target))
    return torch.cat(clips, dim=2)[:, :, :future.shape[2]]
