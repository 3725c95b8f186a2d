"""LVDM's hierarchical long-video prediction: the frame bookkeeping, in latent frames.

Timeline: latent frames ``0 .. c-1`` are the observed context, ``c .. c+N-1`` the future to fill.
A prediction model with key stride ``r`` samples ``n`` keyframe latents per call, far ahead:
for a segment starting at index ``p`` (the first unfilled one), keys go to ``p + r - 1, p + 2r - 1,
..., p + n r - 1``, conditioned on the ``c`` latents before ``p``. An interpolation model then
fills the ``r - 1`` latents between each pair of neighbours (the last latent before the segment
and the first key, then consecutive keys), given the two as its first and last frames (LVDM's
interpolation mask). The next segment starts after the last key. So every index is written
exactly once, keys are never overwritten, and a call only reads indices already written
(:func:`hierarchical_fill` asserts all three).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass(frozen=True)
class Segment:
    start: int  # the first timeline index it fills
    keys: tuple[int, ...]  # where the sampled keyframe latents go (the ones kept)
    gaps: tuple[tuple[int, int], ...]  # (left, right) neighbours; the interpolator fills left+1 .. right-1


def plan_segments(context: int, total: int, stride: int, keys_per_call: int) -> list[Segment]:
    """The segments that fill ``total`` future latents after ``context`` observed ones. The last
    segment keeps only the keys it needs (``ceil(remaining / stride)``); the filled timeline may
    run past ``context + total`` by less than ``stride`` (cut by the caller)."""
    if min(context, stride, keys_per_call) < 1 or total < 0:
        raise ValueError(f"context, stride and keys_per_call must be >= 1, total >= 0; got "
                         f"{context}, {stride}, {keys_per_call}, {total}")
    segments, start, end = [], context, context + total
    while start < end:
        n = min(keys_per_call, math.ceil((end - start) / stride))
        keys = tuple(start + (j + 1) * stride - 1 for j in range(n))
        anchors = (start - 1, *keys)
        gaps = tuple((anchors[j], anchors[j + 1]) for j in range(n)) if stride > 1 else ()
        segments.append(Segment(start, keys, gaps))
        start = keys[-1] + 1
    return segments


def hierarchical_fill(context: torch.Tensor, total: int, stride: int, keys_per_call: int,
                      predict_keys: Callable[[torch.Tensor], torch.Tensor],
                      interpolate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``[B, E, c, h, w]`` observed latents -> ``[B, E, total, h, w]`` future latents.

    ``predict_keys(latest)``: the ``c`` latents before a segment -> ``[B, E, n, h, w]`` keys (the
    first ones are kept when fewer are needed); ``interpolate(left, right)``: two ``[B, E, 1, h, w]``
    latents -> the ``stride - 1`` between them."""
    c = context.shape[2]
    segments = plan_segments(c, total, stride, keys_per_call)
    length = max([c + total] + [s.keys[-1] + 1 for s in segments])
    slots: list[Optional[torch.Tensor]] = [context[:, :, i:i + 1] for i in range(c)] + [None] * (length - c)

    def put(index: int, latent: torch.Tensor) -> None:
        if slots[index] is not None:
            raise AssertionError(f"latent frame {index} would be written twice")
        slots[index] = latent

    def read(indices: range | list[int]) -> torch.Tensor:
        missing = [i for i in indices if slots[i] is None]
        if missing:
            raise AssertionError(f"latent frames {missing} are read before they are written")
        return torch.cat([slots[i] for i in indices], dim=2)

    for segment in segments:
        keys = predict_keys(read(range(segment.start - c, segment.start)))
        if keys.shape[2] < len(segment.keys):
            raise ValueError(f"predict_keys gave {keys.shape[2]} keys; the segment needs {len(segment.keys)}")
        for j, index in enumerate(segment.keys):
            put(index, keys[:, :, j:j + 1])
        for left, right in segment.gaps:
            between = interpolate(read([left]), read([right]))
            if between.shape[2] != right - left - 1:
                raise ValueError(f"interpolate gave {between.shape[2]} latents; {right - left - 1} lie between")
            for i in range(between.shape[2]):
                put(left + 1 + i, between[:, :, i:i + 1])
    return read(range(c, c + total))
