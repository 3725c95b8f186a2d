"""Clip sampling shared by every file-backed dataset.

A clip is ``frames`` frames taken every ``frame_stride`` frames of a source video, centre-cropped
to a square, resized (antialiased) to ``resolution`` and scaled to ``[-1, 1]``: float32
``[C=3, T, H, W]``.

Keys: ``dataset[i]`` or ``dataset[(i, draw)]`` as yielded by :class:`tools.loader.InfiniteSampler`.
Train split: the clip start is drawn from ``sample_rng(seed, draw)`` (``(seed, i)`` for an int key),
so a clip is a pure function of the key, whichever worker loads it. Test split: clips start at
frame 0.

A video that fails to decode is logged once and replaced by the next video (``i + 1``, ``i + 2``,
...; the same replacement in every process), so one bad file never stops a run. The item's
``index`` is the video the clip came from.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

from tools.config import ConfigError
from tools.seeding import sample_rng
from tools.video_io import VideoTooShortError

logger = logging.getLogger("rsvp.data")

SPLITS = ("train", "test")
# How many other videos a failing item tries before giving up.
MAX_FALLBACKS = 16


class DatasetError(ConfigError):
    """The data cannot be used as configured (missing path, nothing usable, bad layout)."""


def clip_span(frames: int, stride: int) -> int:
    """Source frames a clip covers: ``(frames - 1) * stride + 1``."""
    return (frames - 1) * stride + 1


def frames_to_clip(frames: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` (C = 1 or 3) -> float32 ``[3, T, R, R]`` in [-1, 1].

    Centre-crops to a square, then resizes with antialiased bilinear interpolation. The resize
    runs on uint8 (PyTorch's fast channels-last path, ~20x faster than float here), so clips
    hold 8-bit values, as videos on disk do.
    """
    t, h, w, c = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = rearrange(torch.from_numpy(frames[:, top:top + side, left:left + side]), "t h w c -> t c h w")
    if side != resolution:
        x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(resolution, resolution),
                          mode="bilinear", antialias=True, align_corners=False)
    x = rearrange(x, "t c h w -> c t h w").float().div_(127.5).sub_(1.0)
    return x.expand(3, -1, -1, -1).contiguous() if c == 1 else x.contiguous()


def split_key(key) -> tuple[int, int | None]:
    """``i`` -> ``(i, None)``; ``(i, draw)`` (tuple, list or array) -> ``(i, draw)``."""
    if np.ndim(key) == 0:
        return int(key), None
    index, draw = key
    return int(index), int(draw)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"Unknown split '{split}': use one of {', '.join(SPLITS)}.")


class ClipDataset(Dataset):
    """Base class: clips from a list of videos. Subclasses give lengths and read frames.

    Attributes for reports: ``num_found`` (videos the split names or finds), ``skipped``
    (``[(path, reason)]``, videos left out), ``len(self) == num_found - len(skipped)``.
    """

    def __init__(self, *, name: str, split: str, frames: int, frame_stride: int, resolution: int,
                 seed: int = 0, num_found: int = 0, skipped: Sequence[tuple[str, str]] = ()) -> None:
        check_split(split)
        self.name, self.split, self.seed = name, split, seed
        self.frames, self.frame_stride, self.resolution = frames, frame_stride, resolution
        self.num_found = num_found
        self.skipped = list(skipped)
        self._failed: set[int] = set()  # per process: videos known not to decode

    # Subclass interface ---------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def num_frames(self, i: int) -> int:
        raise NotImplementedError

    def read_frames(self, i: int, indices: list[int]) -> np.ndarray:
        """uint8 ``[len(indices), H, W, C]``."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return str(i)

    # Sampling --------------------------------------------------------------------------------
    @property
    def span(self) -> int:
        return clip_span(self.frames, self.frame_stride)

    def read_clip(self, i: int, start: int) -> np.ndarray:
        """Frames ``start, start + stride, ...`` of video ``i``; if the video turns out shorter
        than its index said (estimated counts), the clip is moved back to end at its last frame."""
        offsets = np.arange(self.frames) * self.frame_stride
        try:
            return self.read_frames(i, (start + offsets).tolist())
        except VideoTooShortError as err:
            if err.num_frames < self.span:
                raise
            start = min(start, err.num_frames - self.span)
            return self.read_frames(i, (start + offsets).tolist())

    def __getitem__(self, key) -> dict:
        index, draw = split_key(key)
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        rng = sample_rng(self.seed, index if draw is None else draw) if self.split == "train" else None
        errors = []
        for attempt in range(min(n, MAX_FALLBACKS + 1)):
            i = (index + attempt) % n
            max_start = max(self.num_frames(i) - self.span, 0)
            start = int(rng.integers(0, max_start + 1)) if rng is not None else 0
            if i in self._failed:
                continue
            try:
                frames = self.read_clip(i, start)
            except Exception as err:  # noqa: BLE001 - any decode problem: use another video
                self._failed.add(i)
                errors.append(f"{self.describe(i)}: {err}")
                logger.warning("could not read %s (%s: %s); using another video in its place",
                               self.describe(i), type(err).__name__, err)
                continue
            return {"video": frames_to_clip(frames, self.resolution), "index": i}
        raise RuntimeError(f"{self.name} ({self.split}): no readable video near index {index}: "
                           + "; ".join(errors[:5]))
