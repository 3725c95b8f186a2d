"""DataLoaders whose sample order depends only on (seed, step), so a resumed run sees the same data."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import signal

from tools.seeding import seed_worker


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of every loader: seed the worker, and let it ignore SIGINT/SIGTERM.

    Ctrl-C in a terminal, ``timeout`` and most schedulers signal the whole process group. A worker
    killed by that signal makes the main process's next batch fail before the trainer can finish
    its step and save a checkpoint; ignored, the worker keeps serving, and the loader shuts it
    down when the main process is done (workers also exit if the main process dies).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed_worker(worker_id)


class InfiniteSampler(Sampler):
    """Endless stream of ``(index, draw)`` keys, sharded over ranks, resumable by step.

    Draw ``g`` of the global stream has ``index = permutation(seed, epoch)[g % n]`` with
    ``epoch = g // n``. Rank ``r`` of ``w`` takes draws ``r, r + w, r + 2w, ...``, so ``w``
    processes with batch ``b`` see exactly the samples one process with batch ``w * b`` sees.
    ``draw`` is handed to the dataset, which seeds its per-sample randomness (e.g. the random
    clip start) with it: the data no longer depends on which worker loads it.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0,
                 shuffle: bool = True) -> None:
        if size <= 0:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.start, self.shuffle = start, shuffle  # start: per-rank items already consumed

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        i = self.start
        epoch, order = -1, None
        while True:
            g = i * self.world_size + self.rank
            if g // self.size != epoch:
                epoch = g // self.size
                order = self._order(epoch)
            yield int(order[g % self.size]), g
            i += 1


def build_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0, start_step: int = 0,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1, pin_memory: bool = False,
                 drop_last: bool = False) -> DataLoader:
    """Train: endless shuffled stream starting at ``start_step``. Test: one ordered pass, sharded by rank."""
    generator = torch.Generator().manual_seed(seed)
    common = dict(num_workers=num_workers, pin_memory=pin_memory, worker_init_fn=init_worker,
                  generator=generator, persistent_workers=num_workers > 0)
    if train:
        sampler = InfiniteSampler(len(dataset), seed, rank, world_size, start=start_step * batch_size)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **common)
    indices = list(range(rank, len(dataset), world_size))
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                      drop_last=drop_last, **common)
