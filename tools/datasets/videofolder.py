"""``videofolder``: any folder tree of videos.

Layout: video files (.avi .mp4 .mkv .webm .gif .mov .m4v) and/or frame folders (a leaf folder
of images = one video, frames in natural name order) at any depth under ``data.path``.

Split: if the root holds ``train/`` and ``test/`` folders, those are the splits. Otherwise the
``round(test_fraction * n)`` videos (at least one, never all) with the smallest md5 hash of their
path relative to the root are the test split; the rest are train. The split is a function of the
file names only, the same on every machine. (Clips of one source video stored as several files
can land on both sides; use train/ and test/ folders when that matters.)
"""
from __future__ import annotations

from tools.datasets.clips import check_split
from tools.datasets.index import find_videos, hash_split
from tools.datasets.video_files import build_video_dataset, require_root

LAYOUT = """  DIR/**/*.{avi,mp4,mkv,webm,gif,mov}     video files at any depth, and/or
  DIR/**/<video>/<frame>.{png,jpg}        frame folders (one leaf folder of images = one video)
  optional DIR/train/... and DIR/test/... fix the split; otherwise test = data.test_fraction of the
  videos, chosen by a stable hash of their relative paths"""


def build(cfg, split: str, seed: int = 0):
    check_split(split)
    root = require_root(cfg, "videofolder", LAYOUT)
    if (root / "train").is_dir() and (root / "test").is_dir():
        candidates = find_videos(root / split)
    else:
        videos = find_videos(root)
        names = {p.relative_to(root).as_posix(): p for p in videos}
        test = hash_split(list(names), cfg.test_fraction)
        candidates = [p for name, p in names.items() if (name in test) == (split == "test")]
    return build_video_dataset(cfg, split, seed, name="videofolder", root=root, candidates=candidates,
                               layout=LAYOUT)
