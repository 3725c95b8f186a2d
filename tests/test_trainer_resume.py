"""Exact resume: an interrupted run continued from its checkpoint matches an uninterrupted one.

The toy task uses dropout, input noise (global torch RNG), data draws with random flips, EMA,
a warm-up + cosine LR schedule and, in the GAN variant, a second optimizer that starts later,
so every piece of state the checkpoint must carry is exercised.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.toy_task import SimulatedCrash, ToyTask, ToyVideos, toy_config
from tools.checkpoint import load_checkpoint
from tools.seeding import seed_everything
from tools.train_logging import read_metrics
from tools.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def train(run_dir, cfg, resume=False, **task_kw):
    seed_everything(0)
    trainer = Trainer(ToyTask(**task_kw), cfg, run_dir, "cpu", resume=resume, progress=False, console=False)
    return trainer, trainer.fit(ToyVideos())


def without_timing(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def assert_same_final_state(dir_a, dir_b):
    a, b = load_checkpoint(dir_a / "model_last.pth"), load_checkpoint(dir_b / "model_last.pth")
    assert a["step"] == b["step"]
    for group in ("nets", "ema"):
        for name in a[group]:
            for key, value in a[group][name].items():
                assert torch.equal(value, b[group][name][key]), f"{group}/{name}/{key}"
    for name in a["optimizers"]:
        for pid, state in a["optimizers"][name]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["optimizers"][name]["state"][pid][key]), f"{name}/{pid}/{key}"
    assert a["task"] == b["task"]


def crash_and_resume(tmp_path, overrides, crash_at, **task_kw):
    cfg = toy_config(*overrides)
    _, full = train(tmp_path / "full", cfg, **task_kw)
    with pytest.raises(SimulatedCrash):
        train(tmp_path / "cut", cfg, crash_at=crash_at, **task_kw)
    trainer, rest = train(tmp_path / "cut", cfg, resume=True, **task_kw)
    assert trainer.task.steps_seen == cfg.train.max_steps  # task state came back too
    return full, rest


VARIANTS = {
    "one_optimizer": ([], {}),
    "gan_two_optimizers_ema": ([], {"gan": True, "disc_start": 2}),
    "fp16_grad_scalers": (["train.precision=fp16"], {"gan": True, "disc_start": 1}),
    "bf16": (["train.precision=bf16"], {}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_crash_after_checkpoint_then_resume_gives_identical_losses(tmp_path, variant):
    overrides, task_kw = VARIANTS[variant]
    full, rest = crash_and_resume(tmp_path, overrides, crash_at=4, **task_kw)
    assert len(full) == 8 and len(rest) == 4
    assert without_timing(rest) == without_timing(full[4:])
    assert without_timing(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == without_timing(full)
    assert_same_final_state(tmp_path / "full", tmp_path / "cut")


def test_records_logged_after_the_checkpoint_are_replaced_on_resume(tmp_path):
    # Logged at 3, 4 (checkpoint), 6, then a crash in step 7: the resumed run redoes 6 and 8.
    full, rest = crash_and_resume(tmp_path, ["train.log_every=3"], crash_at=6)
    assert [r["step"] for r in full] == [3, 4, 6, 8] and [r["step"] for r in rest] == [6, 8]
    assert without_timing(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == without_timing(full)


def test_resume_is_exact_with_loader_workers(tmp_path):
    full, rest = crash_and_resume(tmp_path, ["data.num_workers=2"], crash_at=4, gan=True)
    assert without_timing(rest) == without_timing(full[4:])
    assert_same_final_state(tmp_path / "full", tmp_path / "cut")


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_to_a_training_process_saves_and_exits_then_resumes(tmp_path, workers):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # In its own process group, signalled as a whole (as Ctrl-C in a terminal or `timeout` do):
    # the DataLoader workers receive the signal too and must not take the checkpoint down with them.
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "toy_task.py"), str(run_dir), "1000", "0.05",
                             str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(read_metrics(run_dir / "metrics.jsonl")) < 3:
            assert proc.poll() is None, f"trainer exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "trainer did not start logging"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in out
    step = load_checkpoint(run_dir / "model_last.pth")["step"]
    assert 3 <= step < 1000
    assert read_metrics(run_dir / "metrics.jsonl")[-1]["step"] == step
    assert "interrupted by SIGTERM" in (run_dir / "log.txt").read_text()

    # Continue the same run for two more steps (a changed max_steps is noted in the log).
    cfg = toy_config(f"train.max_steps={step + 2}", "train.ckpt_every=100000")
    trainer, rest = train(run_dir, cfg, resume=True)
    assert [r["step"] for r in rest] == [step + 1, step + 2]
    log = (run_dir / "log.txt").read_text()
    assert f"resumed from {run_dir / 'model_last.pth'} at step {step}" in log
    assert "train.max_steps: 1000 ->" in log
