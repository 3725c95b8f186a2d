"""``ucf101``: UCF-101 action videos.

Layout: ``data.path/<Class>/v_<Class>_gNN_cMM.avi`` (as unpacked from UCF101.rar; frame folders
``data.path/<Class>/v_<Class>_gNN_cMM/<frame>.jpg`` work too). The official
split lists ``ucfTrainTestlist/trainlist0{1,2,3}.txt`` and ``testlist0{1,2,3}.txt`` are looked
for in ``data.path/ucfTrainTestlist/``, ``data.path/../ucfTrainTestlist/`` or directly in
``data.path`` or its parent.

Split: with the lists, fold ``data.fold`` (1, 2 or 3) uses ``trainlist0F.txt`` / ``testlist0F.txt``
(videos matched by file name without suffix, case-insensitively; listed videos that are not on disk are reported
as skipped, videos in neither list are not used). Without the lists, the official scheme by group
(the ``_gNN_`` in the file name; a group is one actor/scene, so no scene is on both sides):
fold 1 tests groups 1-7, fold 2 groups 8-14, fold 3 groups 15-21; groups 22-25 are always train.
Files without a group number are split by a stable md5 hash of their relative path
(``data.test_fraction`` of them are test).
"""
from __future__ import annotations

import re
from pathlib import Path

from tools.datasets.clips import DatasetError, check_split
from tools.datasets.index import find_videos, hash_split
from tools.datasets.video_files import build_video_dataset, require_root
from tools.video_io import VIDEO_SUFFIXES

LAYOUT = """  DIR/<Class>/v_<Class>_gNN_cMM.avi               e.g. DIR/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi
  DIR/ucfTrainTestlist/{train,test}list0{1,2,3}.txt (or DIR/../ucfTrainTestlist/); optional: without
  them the split is by group number (fold 1 tests groups 1-7, fold 2 8-14, fold 3 15-21)"""

GROUP = re.compile(r"_g(\d+)_", re.IGNORECASE)


def find_split_lists(root: Path, fold: int) -> tuple[Path, Path] | None:
    for folder in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist", root, root.parent):
        train, test = folder / f"trainlist0{fold}.txt", folder / f"testlist0{fold}.txt"
        if train.is_file() and test.is_file():
            return train, test
    return None


def read_split_list(path: Path) -> list[str]:
    """Relative video paths named in a train/test list (the class number column is dropped)."""
    names = []
    for line in path.read_text().splitlines():
        parts = line.strip().split()
        if parts:
            names.append(parts[0].replace("\\", "/"))
    return names


def video_key(path: Path | str) -> str:
    """How list entries are matched to files: the name without suffix, lower case (the lists and
    the files disagree on case, e.g. HandstandPushups/v_HandStandPushups_g01_c01.avi)."""
    path = Path(path)
    name = path.name if path.suffix.lower() not in VIDEO_SUFFIXES else path.stem
    return name.lower()


def group_of(path: Path) -> int | None:
    match = GROUP.search(path.name)
    return int(match.group(1)) if match else None


def build(cfg, split: str, seed: int = 0):
    check_split(split)
    root = require_root(cfg, "ucf101", LAYOUT)
    if cfg.fold not in (1, 2, 3):
        raise DatasetError(f"ucf101: data.fold must be 1, 2 or 3, not {cfg.fold}")
    videos = find_videos(root)
    lists = find_split_lists(root, cfg.fold)
    skipped, notes = [], []
    if lists is not None:
        by_name = {video_key(p): p for p in videos}
        wanted = read_split_list(lists[0] if split == "train" else lists[1])
        candidates = [by_name[video_key(n)] for n in wanted if video_key(n) in by_name]
        skipped = [(str(root / n), f"listed in {lists[split == 'test'].name} but not on disk")
                   for n in wanted if video_key(n) not in by_name]
        listed = {video_key(n) for lst in lists for n in read_split_list(lst)}
        unlisted = sum(1 for name in by_name if name not in listed)
        if unlisted:
            notes.append(f"{unlisted} videos under {root} are in neither {lists[0].name} nor "
                         f"{lists[1].name} and are not used")
    else:
        test_groups = range(7 * (cfg.fold - 1) + 1, 7 * cfg.fold + 1)
        no_group = [p.relative_to(root).as_posix() for p in videos if group_of(p) is None]
        hashed_test = hash_split(no_group, cfg.test_fraction)

        def is_test(p: Path) -> bool:
            group = group_of(p)
            return group in test_groups if group is not None else p.relative_to(root).as_posix() in hashed_test

        candidates = [p for p in videos if is_test(p) == (split == "test")]
    return build_video_dataset(cfg, split, seed, name="ucf101", root=root, candidates=candidates,
                               layout=LAYOUT, skipped=skipped, notes=notes)
