"""Datasets of video files and frame folders: the part ucf101, sky and videofolder share."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tools.datasets.clips import ClipDataset, DatasetError, clip_span
from tools.datasets.index import VideoEntry, index_videos, warn_skipped
from tools.video_io import read_video_frames


class VideoFileDataset(ClipDataset):
    """Clips from indexed video files / frame folders; only the needed frames are decoded."""

    def __init__(self, entries: Sequence[VideoEntry], root: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries = list(entries)
        self.root = root

    def __len__(self) -> int:
        return len(self.entries)

    def num_frames(self, i: int) -> int:
        return self.entries[i].num_frames

    def read_frames(self, i: int, indices: list[int]) -> np.ndarray:
        entry = self.entries[i]
        return read_video_frames(entry.path, indices, first_pts=entry.first_pts)

    def describe(self, i: int) -> str:
        return self.entries[i].path


def require_root(cfg, name: str, layout: str) -> Path:
    """``data.path`` as an existing Path, or a DatasetError that says what is expected."""
    if not cfg.path:
        raise DatasetError(f"The {name} dataset needs its root folder: pass --data_path DIR "
                           f"(or data.path=DIR). Expected layout:\n{layout}")
    root = Path(cfg.path).expanduser()
    if not root.exists():
        raise DatasetError(f"Data path {root} does not exist (data.path / --data_path). "
                           f"Expected layout for {name}:\n{layout}")
    return root


def build_video_dataset(cfg, split: str, seed: int, *, name: str, root: Path, candidates: Sequence[Path],
                        layout: str, skipped: Sequence[tuple[str, str]] = (),
                        notes: Iterable[str] = ()) -> VideoFileDataset:
    """Index ``candidates``, report what was skipped (one warning), fail clearly on nothing usable.

    ``skipped`` holds videos the caller already knows are missing (e.g. listed but not on disk).
    """
    span = clip_span(cfg.frames, cfg.frame_stride)
    entries, bad = index_videos(list(candidates), min_frames=span, cache_dir=cfg.cache_dir, root=root,
                                desc=f"Indexing {name} {split}")
    skipped = list(skipped) + bad
    num_found = len(entries) + len(skipped)
    label = f"{name} ({split} split, {root})"
    if not entries:
        reasons = "".join(f"\n  {p}: {r}" for p, r in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        found = (f"found {num_found} videos but none is usable (a clip of data.frames={cfg.frames} at "
                 f"data.frame_stride={cfg.frame_stride} needs {span} frames):{reasons}{more}"
                 if num_found else "found no videos")
        raise DatasetError(f"{label}: {found}\nExpected layout:\n{layout}")
    warn_skipped(label, skipped, num_found, notes)
    return VideoFileDataset(entries, root, name=name, split=split, frames=cfg.frames,
                            frame_stride=cfg.frame_stride, resolution=cfg.resolution, seed=seed,
                            num_found=num_found, skipped=skipped)
