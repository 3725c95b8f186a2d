"""Token folders written by ``--exp extract`` and read by the second stage.

Layout::

    OUT/
      meta.json                 # shapes, codebook size and dimension, dtype, source checkpoint, data
      codebook.npy              # float32 [K, D]: code vectors (index -> continuous latent)
      train/
        scene_00000.npy         # uint16 (int32 for K > 65535) [N, 1, Hs, Ws]
        object_00000.npy        # [N, 1, Ho, Wo]
        motion_00000.npy        # [N, T, Hm, Wm]
                                # (prediction pairs, extract's model.cond_frames > 0: cond_scene,
                                #  cond_object, cond_motion of the observed pseudo-clip, future_motion)
        keys_00000.npy          # int64 [N, 2]: (video index, draw) of each clip in the dataset
        shard_00000.done        # written last: the shard is complete
      test/ ...

Every array is a plain ``.npy`` file, so it can be memory-mapped (``np.load(mmap_mode="r")``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

COMPONENTS = ("scene", "object", "motion")
META_NAME = "meta.json"


def index_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint16) if codebook_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def shard_done_path(split_dir: Path, shard: int) -> Path:
    return split_dir / f"shard_{shard:05d}.done"


def shard_file(split_dir: Path, name: str, shard: int) -> Path:
    return split_dir / f"{name}_{shard:05d}.npy"


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a token folder (no {META_NAME}); create one with "
                                f"python main.py --exp extract --first_model CKPT --data NAME --out {folder}")
    return json.loads(path.read_text())


class TokenDataset(Dataset):
    """The clips of one split of a token folder, memory-mapped: items are dicts of int64 index grids."""

    def __init__(self, folder: str | Path, split: str) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(folder)
        split_dir = self.folder / split
        shards = sorted(int(p.stem.split("_")[1]) for p in split_dir.glob("shard_*.done"))
        expected = self.meta.get("splits", {}).get(split, {}).get("num_shards")
        if not shards or (expected is not None and len(shards) != expected):
            raise FileNotFoundError(f"{split_dir}: extraction is incomplete ({len(shards)} of "
                                    f"{expected if expected is not None else '?'} shards); re-run --exp extract to finish it")
        self.names = list(self.meta.get("arrays", COMPONENTS))
        self.arrays = {name: [np.load(shard_file(split_dir, name, s), mmap_mode="r") for s in shards]
                       for name in (*self.names, "keys")}
        sizes = [len(a) for a in self.arrays["keys"]]
        self.offsets = np.cumsum([0] + sizes)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i[0]) if isinstance(i, tuple) else int(i)  # (index, draw) keys from InfiniteSampler
        if not 0 <= i < len(self):
            raise IndexError(f"token index {i} out of range for {len(self)} clips")
        shard = int(np.searchsorted(self.offsets, i, side="right") - 1)
        j = i - int(self.offsets[shard])
        item = {name: torch.from_numpy(np.asarray(self.arrays[name][shard][j]).astype(np.int64))
                for name in self.names}
        item["index"] = i
        return item

    def codebook(self) -> torch.Tensor:
        return torch.from_numpy(np.load(self.folder / "codebook.npy"))
