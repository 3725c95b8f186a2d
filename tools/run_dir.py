"""Run folders: ``results/{exp}_{id}_{data}_{seed}/``, created once, resumed on request, locked while in use."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from tools.config import ConfigError, save_config

LOCK_NAME = ".lock"
# What a folder holds when its run never started: the config written by prepare_run_dir, the lock.
_UNSTARTED = {"config.yaml", LOCK_NAME}


class RunDirError(ConfigError):
    """The run folder is not in the state the command asks for (exists without --resume, ...)."""


class RunDirBusy(RunDirError):
    """Another process holds the run folder's lock."""


def run_dir_for(cfg: DictConfig) -> Path:
    return Path(cfg.results_dir) / f"{cfg.exp}_{cfg.id}_{cfg.data.name}_{cfg.seed}"


def is_main_process() -> bool:
    # torchrun sets RANK; only rank 0 creates folders and writes files.
    return int(os.environ.get("RANK", "0")) == 0


def run_started(run_dir: Path) -> bool:
    """Whether a run folder holds anything a run wrote (a folder with only its config never started)."""
    return run_dir.is_dir() and any(p.name not in _UNSTARTED for p in run_dir.iterdir())


def prepare_run_dir(cfg: DictConfig, resume: bool) -> Path:
    """Create the run folder and write the resolved config into it, or, with ``resume``, check it exists.

    Never silently overwrites: a started run without ``resume`` is an error suggesting
    ``--resume`` or a new ``--id``. A resumed run's folder is left as it is: the Trainer rewrites
    ``config.yaml`` once the checkpoint has loaded, so a failed ``--resume`` changes nothing.
    """
    run_dir = run_dir_for(cfg)
    if not is_main_process():
        return run_dir
    if resume:
        if not run_dir.is_dir():
            raise RunDirError(f"--resume given, but there is no run folder {run_dir} to resume.")
        return run_dir
    if run_started(run_dir):
        raise RunDirError(
            f"Run folder {run_dir} already exists. Add --resume to continue that run, "
            f"or pass a new --id (e.g. --id {cfg.id}2) to start another one."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def remove_unstarted_run_dir(run_dir: Path) -> None:
    """Delete a run folder that holds nothing but its config (no checkpoint, no logs)."""
    if not is_main_process() or run_started(run_dir) or not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        p.unlink()
    run_dir.rmdir()


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an advisory lock on a run folder (``.lock``, with this PID) while a process trains in it.

    A second process asking for the same folder gets a RunDirError naming the holder's PID. The
    lock is released when the process ends in any way (the file stays; it is not the lock).
    """
    if not is_main_process():
        yield
        return
    handle = open(run_dir / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirBusy(f"Run folder {run_dir} is in use by process {holder} (lock {run_dir / LOCK_NAME}); "
                              "wait for it to finish or stop it, then run this command again.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
