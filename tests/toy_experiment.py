"""A test-only experiment, ``--exp toy``: the ToyTask trained through main.py, run_training and the Trainer.

It exercises the real command-line path (run folder, lock, resume, error handling) in a second
instead of a first-stage model's minute. ``model.hidden`` is its architecture key.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.toy_task import ToyAutoencoder, ToyTask, ToyVideos
from tools.experiments.common import run_training
from tools.registry import EXPERIMENTS, Experiment, register_experiment

TOY_ARGS = ["train.batch_size=4", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=0",
            "train.keep_last=2", "train.ema_decay=0.9", "train.optim.lr=0.01", "data.num_workers=0",
            "seed=3", "device=cpu"]


@dataclass
class ToyModel:
    hidden: int = 8  # channels of the toy autoencoder


def _run(cfg, run_dir, resume):
    def make_task(device):
        task = ToyTask()
        task.model = ToyAutoencoder(hidden=int(cfg.model.hidden))
        return task

    return run_training(make_task, cfg, run_dir, resume, ToyVideos())


@pytest.fixture
def toy_experiment():
    exp = register_experiment(Experiment(name="toy", model_schema=ToyModel, run=_run, description="test-only"))
    yield exp
    EXPERIMENTS.pop("toy", None)


def toy_argv(results, *args: str) -> list[str]:
    return ["--exp", "toy", "--id", "t", f"results_dir={results}", *TOY_ARGS, *args]
