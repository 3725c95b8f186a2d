"""Run folders: ``results/{exp}_{id}_{data}_{seed}/``, created once, resumed on request."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from tools.config import ConfigError, save_config


class RunDirError(ConfigError):
    """The run folder is not in the state the command asks for (exists without --resume, ...)."""


def run_dir_for(cfg: DictConfig) -> Path:
    return Path(cfg.results_dir) / f"{cfg.exp}_{cfg.id}_{cfg.data.name}_{cfg.seed}"


def is_main_process() -> bool:
    # torchrun sets RANK; only rank 0 creates folders and writes files.
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(cfg: DictConfig, resume: bool) -> Path:
    """Create (or, with ``resume``, reopen) the run folder and write the resolved config into it.

    Never silently overwrites: an existing folder without ``resume`` is an error suggesting
    ``--resume`` or a new ``--id``.
    """
    run_dir = run_dir_for(cfg)
    if not is_main_process():
        return run_dir
    if resume:
        # What changed since the checkpoint is logged by the Trainer when it resumes.
        if not run_dir.is_dir():
            raise RunDirError(f"--resume given, but there is no run folder {run_dir} to resume.")
    elif run_dir.exists():
        raise RunDirError(
            f"Run folder {run_dir} already exists. Add --resume to continue that run, "
            f"or pass a new --id (e.g. --id {cfg.id}2) to start another one."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def remove_unstarted_run_dir(run_dir: Path) -> None:
    """Delete a run folder that holds nothing but its config (no checkpoint, no logs)."""
    if not is_main_process() or not run_dir.is_dir():
        return
    contents = {p.name for p in run_dir.iterdir()}
    if contents <= {"config.yaml"}:
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()
