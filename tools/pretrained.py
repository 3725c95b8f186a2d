"""Trained parts read back from checkpoints, whichever method wrote them: first stages and predictors.

A checkpoint's saved config names the experiment that wrote it (``exp``); the experiment's
registry entry says how its checkpoints become a first stage (``Experiment.first_stage``) or a
predictor (``Experiment.load_predictor``). This module is the one place that finds, reads and
checks such checkpoints; every problem is a :class:`CheckpointError` or :class:`ConfigError`
(one ``error:`` line and exit status 2 in every entry point). What it loads only runs inference,
so its networks come in their fastest inference layout (:func:`models.memory_format.for_inference`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.interface import FirstStage, Predictor
from models.memory_format import for_inference
from tools.checkpoint import last_checkpoint_path, load_checkpoint
from tools.config import ConfigError
from tools.registry import FirstStageEntry, get_experiment, load_experiments


def find_first_stage(cfg: DictConfig) -> Path:
    """The first-stage checkpoint a run builds on: ``--first_model``, else the last checkpoint of
    ``--first_stage_folder``."""
    if cfg.get("first_model"):
        path = Path(cfg.first_model)
    elif cfg.get("first_stage_folder"):
        path = last_checkpoint_path(cfg.first_stage_folder)
    else:
        raise ConfigError(f"--exp {cfg.exp} needs a trained first stage: pass --first_model "
                          "results/first_stage_.../model_last.pth (or a gan run's), or --first_stage_folder "
                          "results/first_stage_...")
    if not path.is_file():
        raise ConfigError(f"first-stage checkpoint {path} not found")
    return path


@dataclass
class TrainedFirstStage:
    """A first stage read from a checkpoint: the model (trained weights, eval mode), the run config
    it was trained with, and the checkpoint's contents."""

    model: FirstStage
    config: DictConfig
    state: dict[str, Any]
    entry: FirstStageEntry

    def tokens(self, cond_frames: int) -> Any:
        """What ``--exp extract`` stores of this first stage (see ``FirstStageEntry.tokens``)."""
        if self.entry.tokens is None:
            raise ConfigError(f"the first stage of --exp {self.config.exp} has no discrete tokens to extract")
        return self.entry.tokens(self.model, cond_frames)


def _experiments_with(attribute: str) -> list[str]:
    return [e.name for e in load_experiments().values() if getattr(e, attribute) is not None]


def load_first_stage(path: str | Path, map_location: str | torch.device = "cpu") -> TrainedFirstStage:
    """The first stage in a checkpoint of any experiment that trains one (EMA weights when present)."""
    state = load_checkpoint(path, map_location, exps=_experiments_with("first_stage"))
    config = OmegaConf.create(state["config"])
    entry = get_experiment(str(config.exp)).for_config(config).first_stage
    return TrainedFirstStage(inference_layout(entry.build(config, state)), config, state, entry)


def first_stage_config(path: str | Path) -> DictConfig:
    """The run config a first-stage checkpoint was trained with; its weights are mapped, not read."""
    state = load_checkpoint(path, exps=_experiments_with("first_stage"), mmap=True)
    return OmegaConf.create(state["config"])


class TrainedPredictor(NamedTuple):
    predictor: Predictor
    config: DictConfig  # the run config it was trained with (data, seed, ...)


def load_predictor(path: str | Path, device: torch.device, raw_weights: bool = False) -> TrainedPredictor:
    """The predictor in a checkpoint of any experiment that trains one, on ``device``: EMA weights
    (``raw_weights``: the raw ones). The checkpoint is read once."""
    state = load_checkpoint(path, exps=_experiments_with("load_predictor"))
    config = OmegaConf.create(state["config"])
    predictor = get_experiment(str(config.exp)).for_config(config).load_predictor(state, device,
                                                                                  raw_weights=raw_weights)
    return TrainedPredictor(inference_layout(predictor), config)


def inference_layout(obj: Any) -> Any:
    """``obj`` (a module, or an object holding modules, such as a predictor) with every network in
    its fastest inference layout, in place; returns ``obj``."""
    modules = [obj] if isinstance(obj, nn.Module) else [v for v in vars(obj).values() if isinstance(v, nn.Module)]
    for module in modules:
        for_inference(module)
    return obj


INFERENCE_PRECISIONS = ("fp32", "bf16")


def inference_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a prediction runs in: ``fp32`` (the default of ``validate.py``: evaluation numbers
    that do not depend on the hardware) or ``bf16`` autocast, an opt-in that is much faster where
    the hardware has bf16 matrix units (CUDA tensor cores; on the CPU, AMX: docs/BENCHMARKS.md) and
    shifts the predictions by bf16 rounding."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
