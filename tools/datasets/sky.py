"""``sky``: SkyTimelapse, stored as folders of frames.

Layout: ``data.path/{train,test}/<video>/<frame>.jpg`` or, as in the public release,
``data.path/sky_train/<video>/<clip>/<frame>.jpg`` and ``sky_test/...`` (the split folder may
also sit one level down, e.g. ``data.path/sky_timelapse/sky_train``). Every leaf folder of frames
is one video; frames are taken in natural name order.

Split: the dataset's own train/test folders.
"""
from __future__ import annotations

from pathlib import Path

from tools.datasets.clips import DatasetError, check_split
from tools.datasets.index import find_videos
from tools.datasets.video_files import build_video_dataset, require_root

LAYOUT = """  DIR/train/<video>/[<clip>/]<frame>.{jpg,png}   (or DIR/sky_train/..., as released)
  DIR/test/<video>/[<clip>/]<frame>.{jpg,png}    (or DIR/sky_test/...)
  every leaf folder of frames is one video"""


def split_dir(root: Path, split: str) -> Path | None:
    names = (split, f"sky_{split}")
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for name in names:
            if (base / name).is_dir():
                return base / name
    return None


def build(cfg, split: str, seed: int = 0):
    check_split(split)
    root = require_root(cfg, "sky", LAYOUT)
    folder = split_dir(root, split)
    if folder is None:
        raise DatasetError(f"sky: no '{split}' or 'sky_{split}' folder under {root}. Expected layout:\n{LAYOUT}")
    return build_video_dataset(cfg, split, seed, name="sky", root=folder, candidates=find_videos(folder),
                               layout=LAYOUT)
