"""Checks shared by the end-to-end tests of the baselines (PVDM, LVDM): a run's losses, random
weights for a zero-initialised denoiser, no future leakage through a task, validate.py on a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import validate


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def randomize(net: torch.nn.Module) -> None:
    """The U-Net's output layer starts at zero: random weights make outputs depend on inputs."""
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))


def future_changed(video: torch.Tensor, observed: int) -> torch.Tensor:
    """``video`` with every frame after the first ``observed`` replaced by noise."""
    changed = video.clone()
    changed[:, :, observed:] = torch.rand_like(changed[:, :, observed:]) * 2 - 1
    return changed


def assert_prediction_ignores_the_future(task, net: torch.nn.Module, video: torch.Tensor, changed: torch.Tensor) -> None:
    """The task's prediction (fixed seed) is the same for two clips that differ after the observed
    frames, and differs for other observed frames."""
    obs_a, obs_b = task.split(video)[0], task.split(changed)[0]
    pred_a = task.predict(net, obs_a, torch.Generator().manual_seed(5))
    assert torch.equal(task.predict(net, obs_b, torch.Generator().manual_seed(5)), pred_a)
    assert not torch.equal(task.predict(net, obs_a.flip(2), torch.Generator().manual_seed(5)), pred_a)


def validate_metrics(ckpt: Path, out: Path, pred_frames: int, num_videos: int = 3, metrics: str = "psnr,ssim") -> dict:
    """``validate.py`` on ``ckpt`` (1 sample, 2 steps, CPU): its metrics.json, after checking the
    model, copy-last-frame and ceiling curves cover every predicted frame."""
    args = ["--ckpt", str(ckpt), "--num_videos", str(num_videos), "--num_samples", "1", "--steps", "2",
            "--pred_frames", str(pred_frames), "--batch_size", "2", "--metrics", metrics, "--device", "cpu",
            "--out", str(out)]
    assert validate.main(args) == 0
    result = json.loads((out / "metrics.json").read_text())
    for key in ("model", "copy_last_frame", "first_stage_ceiling"):
        assert len(result[key]["curves"]["psnr"]["mean"]) == pred_frames
    return result


def assert_seeded_prediction(predictor, observed: torch.Tensor, **guided: float) -> torch.Tensor:
    """A randomized predictor's one clip: in [-1, 1], the same for the same seed, another for another
    seed, and changed by the sampling options ``guided`` (e.g. guidance=2.0); returns it."""
    randomize(predictor.net)
    a = predictor.predict(observed, torch.Generator().manual_seed(5))
    assert a.shape[2] == predictor.frames and a.abs().max() <= 1
    assert torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5)), a)
    assert not torch.equal(predictor.predict(observed, torch.Generator().manual_seed(6)), a)
    for key, value in guided.items():
        assert not torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5), **{key: value}), a)
    return a
