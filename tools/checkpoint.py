"""Checkpoint files: atomic writes, ``model_{step}.pth`` rotation, ``model_last.pth``, loading.

Layout of a training checkpoint (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {
      "format": "rsvp-train-v1",
      "step": int,                      # optimizer iterations completed
      "nets": {name: state_dict},       # raw (unwrapped) networks
      "ema": {name: state_dict},        # EMA copies, same keys as nets[name]; only EMA'd nets
      "ema_updates": {name: int},       # number of EMA updates done (0 = next update copies)
      "optimizers": {name: state_dict},
      "schedulers": {name: state_dict},
      "scalers": {name: state_dict},    # torch.amp.GradScaler, one per optimizer
      "rng": [rng_state per rank],      # tools.seeding.rng_state() of every rank, by rank
      "world_size": int,
      "config": str,                    # the fully resolved run config as YAML
      "task": dict,                     # the task's own state (TrainTask.state_dict())
      "torch_version": str,
    }

A later stage that only needs weights calls :func:`load_net_state` (EMA weights by default).
"""
from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import OmegaConf

from tools.config import ConfigError

FORMAT = "rsvp-train-v1"
LAST_NAME = "model_last.pth"
_STEP_RE = re.compile(r"^model_(\d+)\.pth$")
# Temporary files of atomic writes (``.{name}.tmp{pid}``, ``config.yaml.tmp``) that a kill left behind.
_PARTIAL_RE = re.compile(r"^(\..+\.tmp\d+|config\.yaml\.tmp)$")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable or lacks what was asked of it (a user error: exit status 2)."""

    def __init__(self, message: str, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.reason = reason or message  # the why, without the path (for lists of damaged files)


def step_checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"model_{step}.pth"


def last_checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LAST_NAME


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    A crash at any moment leaves either the old file or the new one, never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _atomic_alias(src: Path, dst: Path) -> None:
    """Make ``dst`` hold the same bytes as ``src`` atomically: a hard link if possible, else a copy."""
    tmp = _tmp_path(dst)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def list_step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``model_{step}.pth`` in ``run_dir``, by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = _STEP_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_run_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``model_{step}.pth`` and point ``model_last.pth`` at it; keep the newest ``keep_last``.

    With ``keep_last == 0`` only ``model_last.pth`` is written.
    """
    run_dir = Path(run_dir)
    last = last_checkpoint_path(run_dir)
    if keep_last <= 0:
        atomic_torch_save(state, last)
        return last
    path = atomic_torch_save(state, step_checkpoint_path(run_dir, step))
    _atomic_alias(path, last)
    for _, old in list_step_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def unreadable_reason(path: Path, err: BaseException) -> str:
    """Why ``torch.load`` failed on ``path``, in words (torch's own message is pages of hints)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes): a copy or a write that never finished"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == _ZIP_MAGIC and not zipfile.is_zipfile(path):
        return f"the file is truncated or damaged ({size:,} bytes, the end of its archive is missing)"
    if "weights only load failed" in str(err).lower() and (head == _ZIP_MAGIC or head[:1] == b"\x80"):
        return "it holds Python objects besides tensors and plain containers (refused: loading them could run code)"
    if head != _ZIP_MAGIC and head[:1] != b"\x80":
        return "it is not a PyTorch checkpoint (not a torch.save file)"
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"the file is damaged ({first_line})"


def checkpoint_exp(state: dict[str, Any]) -> Optional[str]:
    """The ``--exp`` a training checkpoint was written by (None if its config does not say)."""
    try:
        return OmegaConf.create(state.get("config", "")).get("exp")
    except Exception:  # a config that no longer parses names no stage
        return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    exps: Optional[Sequence[str]] = None, mmap: bool = False) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only`` unpickling: tensors and plain containers only).

    ``exps``: the experiments whose checkpoints are accepted (e.g. ``("first_stage", "gan")``), so
    that a checkpoint of another stage is named as such instead of failing on a missing key later.
    ``mmap``: map the tensors instead of reading them (cheap when only the config is wanted).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        reason = unreadable_reason(path, err)
        raise CheckpointError(f"could not read checkpoint {path}: {reason}", reason) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an RSVP training checkpoint (expected format '{FORMAT}')",
                              "not an RSVP training checkpoint")
    exp = checkpoint_exp(state)
    if exps is not None and exp not in exps:
        raise CheckpointError(f"{path} is a checkpoint of --exp {exp}; this needs one of --exp {' or '.join(exps)}")
    return state


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether a run folder holds any checkpoint (``model_last.pth`` or a ``model_{step}.pth``)."""
    return last_checkpoint_path(run_dir).is_file() or bool(list_step_checkpoints(run_dir))


def find_resume_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The checkpoint a run resumes from: ``model_last.pth``, else the newest intact ``model_{step}.pth``.

    Returns ``(path, state, notes)``; the notes say which damaged files were passed over and why.
    A run whose every checkpoint is damaged is a CheckpointError listing the reasons.
    """
    run_dir = Path(run_dir)
    candidates = [last_checkpoint_path(run_dir)] + [p for _, p in reversed(list_step_checkpoints(run_dir))]
    damaged: list[str] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            damaged.append(f"{path.name}: {err.reason}")
            continue
        notes = [f"resume: passed over {'; '.join(damaged)}; using {path.name} (step {state['step']}), "
                 "the newest intact checkpoint"] if damaged else []
        return path, state, notes
    if damaged:
        raise CheckpointError(f"no intact checkpoint to resume in {run_dir} ({'; '.join(damaged)}); "
                              "move the folder away and start the run again without --resume")
    raise CheckpointError(f"no checkpoint to resume in {run_dir}")


def remove_partial_writes(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint/config writes that were killed; returns them.

    Call only while holding the run folder's lock (a running writer's temporary is not partial).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    partial = [p for p in run_dir.iterdir() if _PARTIAL_RE.match(p.name) and p.is_file()]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def load_net_state(path_or_state: str | Path | dict[str, Any], name: str = "model", *, ema: Optional[bool] = None,
                   map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of network ``name`` from a checkpoint, for a later stage or evaluation.

    ``ema=None`` (default): the EMA weights when the checkpoint has them, else the raw ones;
    ``ema=True``: the EMA weights or an error; ``ema=False``: the raw weights. Load the result
    with ``net.load_state_dict(...)``.
    """
    state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state, map_location)
    where = "the given state" if isinstance(path_or_state, dict) else str(path_or_state)
    nets, emas = state.get("nets", {}), state.get("ema", {})
    if name not in nets:
        raise CheckpointError(f"{where} has no network '{name}' (it has: {', '.join(sorted(nets)) or 'none'})")
    if ema is False:
        return nets[name]
    if name in emas:
        return emas[name]
    if ema:
        raise CheckpointError(f"{where} has no EMA weights for '{name}' (EMA was kept for: "
                              f"{', '.join(sorted(emas)) or 'none'}); pass ema=False for the raw weights")
    return nets[name]


def with_trained_weights(model: torch.nn.Module, state: dict[str, Any], name: str = "model") -> torch.nn.Module:
    """``model`` (built from the checkpoint's config) with network ``name``'s weights from ``state``
    (EMA when present), in eval mode: a frozen stage read back for later stages."""
    model.load_state_dict(load_net_state(state, name))
    return model.eval()
