"""``mmnist``: Moving MNIST, the standard ``mnist_test_seq.npy``.

Layout: ``data.path`` is the ``.npy`` file itself or a folder holding ``mnist_test_seq.npy``:
uint8 ``[20, N, 64, 64]`` (20 frames of N sequences; N = 10000 in the standard file). Frames are
grayscale, repeated to 3 channels. The array is memory-mapped, never loaded whole.

Split: the file has none of its own; the last ``round(test_fraction * N)`` sequences (at least
one) are the test split, the others train (N = 10000, test_fraction 0.1: 9000 / 1000).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.datasets.clips import ClipDataset, DatasetError, check_split, clip_span
from tools.datasets.video_files import require_root

LAYOUT = """  DIR/mnist_test_seq.npy   (or data.path=.../mnist_test_seq.npy): uint8 [20, N, 64, 64]"""
FILE_NAME = "mnist_test_seq.npy"


class MovingMNIST(ClipDataset):
    def __init__(self, path: Path, first: int, count: int, seq_len: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path, self.first, self.count, self.seq_len = path, first, count, seq_len
        self._array = None  # opened lazily in each worker (a memmap must not be pickled)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __len__(self) -> int:
        return self.count

    def num_frames(self, i: int) -> int:
        return self.seq_len

    def read_frames(self, i: int, indices: list[int]) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return np.asarray(self._array[indices, self.first + i])[..., None]  # [T, H, W, 1]

    def describe(self, i: int) -> str:
        return f"{self.path}[:, {self.first + i}]"


def build(cfg, split: str, seed: int = 0):
    check_split(split)
    path = require_root(cfg, "mmnist", LAYOUT)
    if path.is_dir():
        path = path / FILE_NAME
        if not path.is_file():
            raise DatasetError(f"mmnist: no {FILE_NAME} in {path.parent}. Expected layout:\n{LAYOUT}")
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DatasetError(f"mmnist: cannot read {path}: {err}. Expected layout:\n{LAYOUT}") from None
    if array.ndim != 4 or array.dtype != np.uint8:
        raise DatasetError(f"mmnist: {path} holds {array.dtype} {list(array.shape)}; expected uint8 "
                           f"[frames, sequences, 64, 64]. Expected layout:\n{LAYOUT}")
    seq_len, total = int(array.shape[0]), int(array.shape[1])
    span = clip_span(cfg.frames, cfg.frame_stride)
    if seq_len < span:
        raise DatasetError(f"mmnist: sequences have {seq_len} frames but a clip of data.frames={cfg.frames} at "
                           f"data.frame_stride={cfg.frame_stride} needs {span}.")
    num_test = min(max(int(round(cfg.test_fraction * total)), 1), total - 1) if total > 1 else 0
    first, count = (0, total - num_test) if split == "train" else (total - num_test, num_test)
    if count == 0:
        raise DatasetError(f"mmnist: {path} has {total} sequences, none left for the {split} split.")
    return MovingMNIST(path, first, count, seq_len, name="mmnist", split=split, frames=cfg.frames,
                       frame_stride=cfg.frame_stride, resolution=cfg.resolution, seed=seed,
                       num_found=count)
