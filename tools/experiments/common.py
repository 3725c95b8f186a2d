"""What every training experiment does around the shared Trainer: devices, DDP, exit codes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig
from torch.utils.data import Dataset, default_collate

from tools.config import ConfigError
from tools.datasets import build_dataset

from tools.distributed import cleanup, init_distributed
from tools.seeding import seed_everything
from tools.trainer import NonFiniteLossError, Trainer, TrainingInterrupted, TrainTask


def run_training(make_task: Callable[[Any], TrainTask], cfg: DictConfig, run_dir: Path, resume: bool,
                 train_data: Dataset, sample_batch: Any = None) -> int:
    """Build the task on this process's device, train it, and turn the ways training ends into exit codes.

    ``make_task(device)`` builds the task once the device (``cuda:LOCAL_RANK`` under torchrun) is known.
    Returns 0 on success, 128+signal after SIGINT/SIGTERM (a checkpoint was saved), 1 on a
    non-finite loss. A :class:`ConfigError` found while building the task propagates (main.py
    exits with status 2 and removes the run folder it had just created).
    """
    info = init_distributed(cfg.device)
    try:
        seed_everything(int(cfg.seed))  # model initialisation is part of the run's reproducibility
        task = make_task(info.device)
        trainer = Trainer(task, cfg, run_dir, info.device, resume=resume)
        trainer.fit(train_data, sample_batch=sample_batch)
        return 0
    except TrainingInterrupted as err:
        print(f"\n{err}. Continue with the same command plus --resume.", file=sys.stderr)
        return err.exit_code
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        cleanup()


def held_out_batch(cfg: DictConfig, data: Optional[DictConfig] = None) -> dict:
    """The first ``model.eval_clips`` test clips (of ``data``, default ``cfg.data``), shown and scored at every sample step."""
    count = int(cfg.model.eval_clips)
    if count < 1:
        raise ConfigError(f"model.eval_clips must be at least 1 (got {count}); "
                          "raise train.sample_every to sample less often")
    test = build_dataset(cfg.data if data is None else data, "test", cfg.seed)
    return default_collate([test[i] for i in range(min(len(test), count))])
