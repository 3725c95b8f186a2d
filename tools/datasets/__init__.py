"""Datasets: a registry of builders, and :func:`build_dataset` to make one from the data config.

Every dataset yields dicts with ``video`` (float32 ``[3, T, H, W]`` in [-1, 1], T = data.frames,
H = W = data.resolution) and ``index``; ``shapes`` adds ``mask`` (int64 ``[T, H, W]``). Items are
indexed by ``int`` or by ``(index, draw)`` keys from :class:`tools.loader.InfiniteSampler`; a
clip is a pure function of its key. Layouts and split rules are in each module's docstring.
"""
from __future__ import annotations

from typing import Callable

from torch.utils.data import Dataset

from tools.datasets import mmnist, shapes, sky, ucf101, videofolder
from tools.datasets.clips import SPLITS, DatasetError, check_split

# name -> builder(data_cfg, split, seed) -> Dataset
DATASETS: dict[str, Callable[..., Dataset]] = {
    "shapes": shapes.build,
    "ucf101": ucf101.build,
    "sky": sky.build,
    "videofolder": videofolder.build,
    "mmnist": mmnist.build,
}


def build_dataset(data_cfg, split: str, seed: int = 0) -> Dataset:
    """The ``split`` ("train" or "test") of dataset ``data_cfg.name``.

    ``data_cfg`` is a :class:`tools.config.DataConfig` or its OmegaConf node. ``seed`` seeds the
    random clip starts of the train split. Raises :class:`DatasetError` (a ConfigError) with a
    message for the user when the data cannot be used.
    """
    if data_cfg.name not in DATASETS:
        raise DatasetError(f"Unknown dataset '{data_cfg.name}' (data.name / --data); available: "
                           f"{', '.join(DATASETS)}.")
    check_split(split)
    if data_cfg.frames < 1 or data_cfg.frame_stride < 1 or data_cfg.resolution < 1:
        raise DatasetError(f"data.frames, data.frame_stride and data.resolution must be positive, got "
                           f"{data_cfg.frames}, {data_cfg.frame_stride} and {data_cfg.resolution}.")
    return DATASETS[data_cfg.name](data_cfg, split, seed)


__all__ = ["DATASETS", "SPLITS", "DatasetError", "build_dataset"]
