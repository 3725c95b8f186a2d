"""Seeding and RNG-state capture, so that runs repeat and resumes continue exactly."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive numpy/random seeds from the worker's torch seed.

    PyTorch seeds each worker's torch RNG as ``base_seed + worker_id`` (base_seed drawn from the
    loader's generator), but leaves numpy and ``random`` identical across workers; without this,
    every worker would draw the same "random" numbers.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """Global python/numpy/torch(/cuda) RNG states, made only of tuples, ints, floats and tensors,
    so that a checkpoint holding it loads with ``torch.load(weights_only=True)``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def sample_rng(*keys: int) -> np.random.Generator:
    """An independent numpy generator for a tuple of integers (e.g. seed, split, index)."""
    return np.random.default_rng([int(k) % 2**63 for k in keys])
