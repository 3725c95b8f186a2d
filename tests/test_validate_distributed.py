"""validate.py under torchrun: two gloo CPU processes write what one process writes."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main
import validate
from evaluation.fvd import save_i3d_standin
from evaluation.protocol import EvalProtocol, PredictionEvaluator
from tests.tiny_configs import TINY_DDPM

REPO = Path(__file__).resolve().parents[1]


def test_shard_batches_cover_every_batch_once():
    one = validate.shard_batches(7, 2)
    assert one == [(0, [0, 1]), (1, [2, 3]), (2, [4, 5]), (3, [6])]
    for world in (2, 3, 5):
        shards = [validate.shard_batches(7, 2, r, world) for r in range(world)]
        assert sorted(b for shard in shards for b in shard) == one  # same batches, each exactly once
        assert [b for b, _ in shards[1]] == list(range(1, 4, world))  # rank r: batches r, r + w, ...
    assert validate.shard_batches(3, 4, rank=1, world_size=2) == []  # more processes than batches
    with pytest.raises(ValueError, match="rank 2"):
        validate.shard_batches(3, 1, rank=2, world_size=2)


class ProjectionDetector:
    """A fast stand-in for the I3D wrapper: a fixed random projection of each clip to 16 features."""

    standin = True

    def __init__(self) -> None:
        self.weight = None

    def features(self, clips: torch.Tensor) -> np.ndarray:
        flat = clips.flatten(1).double()
        if self.weight is None:
            self.weight = torch.randn(flat.shape[1], 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return (flat @ self.weight).numpy()

    def describe(self) -> dict:
        return {"standin": True}


def test_gathered_evaluator_states_give_the_one_process_result():
    """Batches scored by two evaluators ("ranks") and merged = all batches scored by one."""
    i3d = ProjectionDetector()
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(5, 3, 6, 16, 16, generator=gen) * 2 - 1
    samples = torch.rand(5, 2, 3, 4, 16, 16, generator=gen) * 2 - 1  # 2 samples of the 4 predicted frames
    names = [f"v{i}" for i in range(5)]

    def evaluate(batches) -> PredictionEvaluator:
        ev = PredictionEvaluator("psnr,ssim,fvd,kvd", EvalProtocol(cond_frames=2), device="cpu", i3d=i3d,
                                 keep_per_video=True)
        for _, idx in batches:
            ev.update(real[idx], samples[idx], names[idx[0]:idx[-1] + 1])
        return ev

    expected = evaluate(validate.shard_batches(5, 2)).compute()  # batches [0, 1] [2, 3] [4]
    parts = []
    for rank in range(2):
        mine = validate.shard_batches(5, 2, rank, 2)
        ev = evaluate(mine)
        parts.append(([b for b, _ in mine], [len(idx) for _, idx in mine], ev.export_batches()))
    merged = evaluate([])
    merged.load_batches(parts[::-1])  # arrival order does not matter
    result = merged.compute()
    assert result == expected
    assert result["per_video"]["names"] == names
    assert result["summary"]["kvd_standin"] is not None and result["summary"]["fvd_standin_per_sample_mean"] is not None

    with pytest.raises(RuntimeError, match="batch 0 was evaluated by two"):
        evaluate([]).load_batches([parts[0], parts[0]])
    with pytest.raises(RuntimeError, match=r"batches \[1\] were not evaluated"):
        evaluate([]).load_batches([parts[0]])


def _assert_same(a, b, path="metrics"):
    """Equal JSON trees (floats to 1e-6 relative)."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not (math.isnan(a) and math.isnan(b)):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), path
    elif not isinstance(a, float):
        assert a == b, path


@pytest.mark.slow  # ~1.5 min on 2 busy cores: a DDPM checkpoint, one run in-process, one under torchrun
def test_two_processes_match_one(first_stage_run, tmp_path):
    assert main.main(["--exp", "ddpm", "--first_model", str(first_stage_run / "model_last.pth"),
                      f"results_dir={tmp_path}", "--id", "val", *TINY_DDPM, "data.shapes.num_test=3",
                      "train.max_steps=1", "train.sample_every=0"]) == 0
    i3d = save_i3d_standin(tmp_path / "i3d_standin.pt")
    # 3 batches of 1: rank 0 takes batches 0 and 2, rank 1 batch 1 (uneven on purpose).
    args = ["--ckpt", str(tmp_path / "ddpm_val_shapes_42" / "model_last.pth"), "--num_videos", "3",
            "--num_samples", "2", "--steps", "2", "--batch_size", "1", "--metrics", "psnr,ssim,kvd",
            "--i3d", str(i3d), "--device", "cpu", "--seed", "3"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1): the same float sums
    try:
        assert validate.main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "validate.py", *args, "--out", str(tmp_path / "two")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert one["model"]["protocol"]["num_videos"] == 3 and one["model"]["summary"]["kvd_standin"] is not None
    _assert_same(two, one)

    names = sorted(p.name for p in (tmp_path / "one" / "videos").iterdir())
    assert len(names) == 3 * (1 + 2 * 2)  # per video: a GIF, and NPY + MP4 per sample
    assert sorted(p.name for p in (tmp_path / "two" / "videos").iterdir()) == names
    for name in (n for n in names if n.endswith(".npy")):
        assert np.array_equal(np.load(tmp_path / "one" / "videos" / name), np.load(tmp_path / "two" / "videos" / name))
    assert (tmp_path / "two" / "grid.png").read_bytes() == (tmp_path / "one" / "grid.png").read_bytes()
