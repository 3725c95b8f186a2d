"""What a training run writes besides checkpoints: ``log.txt``, ``metrics.jsonl``, ``tb/``, ``samples/``.

* ``log.txt`` — human-readable lines (also echoed to the console above the progress bar).
* ``metrics.jsonl`` — one JSON object per logged step: ``{"step": 1200, "loss": 0.12, ...}``.
* ``tb/`` — TensorBoard scalars and sample frame strips.
* ``samples/{name}_{step:07d}.gif`` — sample videos tiled into one animated grid.

Only the main process writes; other ranks get ``RunLogger(..., enabled=False)``, whose methods do
nothing. When a run resumes from step ``s``, records after ``s`` (written before a crash) are
dropped from ``metrics.jsonl`` and TensorBoard (``purge_step``), so every step appears once.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from tqdm import tqdm

from tools.video_io import frame_strip, video_grid, write_video


def format_scalars(values: Mapping[str, float]) -> str:
    return " | ".join(f"{k} {v:.4g}" for k, v in values.items())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLogger:
    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: Optional[int] = None,
                 console: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.console = console
        self._tb = None
        self._tb_wanted = tensorboard
        self._resume_step = resume_step
        self._log_file = self._metrics_file = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and metrics_path.is_file():
            kept = [r for r in read_metrics(metrics_path) if r.get("step", 0) <= resume_step]
            tmp = metrics_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(metrics_path)
        elif resume_step is None:
            metrics_path.unlink(missing_ok=True)
        self._metrics_file = open(metrics_path, "a", buffering=1)
        self._log_file = open(self.run_dir / "log.txt", "a", buffering=1)

    @property
    def tb(self):
        """The TensorBoard ``SummaryWriter`` (created on first use), or None when disabled."""
        if self._tb is None and self.enabled and self._tb_wanted:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=self._resume_step)
        return self._tb

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in message.splitlines() or [""]:
            self._log_file.write(f"[{stamp}] {line}\n")
        if self.console:
            tqdm.write(message, file=sys.stdout)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One ``metrics.jsonl`` record and TensorBoard scalars for ``step``."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self._metrics_file.write(json.dumps(record) + "\n")
        tb = self.tb
        if tb is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    tb.add_scalar(key, value, step)

    def videos(self, step: int, videos: Mapping[str, torch.Tensor], fps: float = 8.0) -> list[Path]:
        """Frame strips to TensorBoard and animated GIF grids to ``samples/`` for ``[B, C, T, H, W]`` videos."""
        if not self.enabled:
            return []
        written = []
        for name, video in videos.items():
            video = video.detach().float().cpu()
            if video.dim() != 5:
                raise ValueError(f"sample '{name}' must be a [B, C, T, H, W] video, got shape {tuple(video.shape)}")
            tb = self.tb
            if tb is not None:
                tb.add_image(f"samples/{name}", frame_strip(video), step, dataformats="HWC")
            safe = name.replace("/", "_")
            written.append(write_video(self.run_dir / "samples" / f"{safe}_{step:07d}.gif", video_grid(video), fps=fps))
        return written

    def close(self) -> None:
        for handle in (self._log_file, self._metrics_file):
            if handle is not None:
                handle.close()
        self._log_file = self._metrics_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
