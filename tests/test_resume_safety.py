"""--resume: damaged checkpoints, failed resumes that change nothing, overrides that take effect, locks."""
from __future__ import annotations

import fcntl
import os
import shutil

import pytest
import torch

import main
from tests.toy_experiment import toy_argv, toy_experiment  # noqa: F401  (fixture)
from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools import checkpoint as ckpt
from tools.config import ConfigError
from tools.run_dir import LOCK_NAME
from tools.seeding import seed_everything
from tools.trainer import Trainer, lr_schedule


def train(run_dir, cfg, resume=False):
    seed_everything(0)
    trainer = Trainer(ToyTask(), cfg, run_dir, "cpu", resume=resume, progress=False, console=False)
    return trainer, trainer.fit(ToyVideos())


def losses(records, after=0):
    return [r["loss"] for r in records if r["step"] > after]


def snapshot(folder):
    """Every file of a run folder with its bytes and modification time (not the lock: it records who ran last)."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("damage", ["truncate", "zero_bytes"])
def test_damaged_model_last_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage):
    cfg = toy_config("train.max_steps=12", "train.ckpt_every=2", "train.keep_last=2")
    _, full = train(tmp_path / "run", cfg)
    last = tmp_path / "run" / "model_last.pth"
    assert sorted(p.name for _, p in ckpt.list_step_checkpoints(tmp_path / "run")) == ["model_10.pth", "model_12.pth"]
    size = last.stat().st_size
    with open(last, "r+b") as handle:  # model_last.pth is a hard link of model_12.pth: both are damaged
        handle.truncate(size // 2 if damage == "truncate" else 0)
    trainer, rest = train(tmp_path / "run", cfg, resume=True)
    assert trainer._resumed_step == 10
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "passed over model_last.pth" in log and "using model_10.pth (step 10)" in log
    assert ("truncated" if damage == "truncate" else "empty (0 bytes)") in log
    assert losses(rest) == losses(full, after=10)  # resumed exactly from step 10
    assert ckpt.load_checkpoint(last)["step"] == 12  # rewritten intact


def test_no_intact_checkpoint_exits_2_and_names_the_reasons(tmp_path, toy_experiment, capsys):
    results = tmp_path / "results"
    assert main.main(toy_argv(results, "train.max_steps=4")) == 0
    run_dir = results / "toy_t_shapes_3"
    for path in run_dir.glob("model_*.pth"):
        path.write_bytes(b"")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main.main(toy_argv(results, "train.max_steps=6", "--resume")) == 2
    err = one_line_error(capsys)
    assert "no intact checkpoint" in err and "model_last.pth: the file is empty (0 bytes)" in err
    assert snapshot(run_dir) == before


def test_resume_that_changes_the_architecture_is_refused_and_changes_nothing(tmp_path, toy_experiment, capsys):
    results = tmp_path / "results"
    assert main.main(toy_argv(results, "train.max_steps=4")) == 0
    run_dir = results / "toy_t_shapes_3"
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main.main(toy_argv(results, "train.max_steps=6", "model.hidden=16", "--resume")) == 2
    err = one_line_error(capsys)
    assert "model.hidden (8 -> 16)" in err
    assert snapshot(run_dir) == before  # config.yaml still says hidden: 8
    assert main.main(toy_argv(results, "train.max_steps=6", "--resume")) == 0  # the right command still works


def test_first_stage_resume_with_another_code_dim_names_the_key(first_stage_run, tmp_path, capsys):
    """The issue's case: --resume model.vqvae.code_dim=8 on a code_dim-4 run."""
    from tiny_configs import TINY

    results = tmp_path / "results"
    shutil.copytree(first_stage_run, results / first_stage_run.name)
    before = snapshot(results / first_stage_run.name)
    argv = ["--exp", "first_stage", "--id", "tiny", f"results_dir={results}", "train.max_steps=6", *TINY]
    assert main.main([*argv, "model.vqvae.code_dim=8", "--resume"]) == 2
    err = one_line_error(capsys)
    assert "model.vqvae.code_dim (4 -> 8)" in err
    assert snapshot(results / first_stage_run.name) == before


def test_optimizer_and_schedule_overrides_take_effect_on_resume(tmp_path):
    _, first = train(tmp_path / "run", toy_config("train.max_steps=4"))
    cfg = toy_config("train.max_steps=8", "train.optim.lr=0.05", "train.optim.warmup_steps=6",
                     "train.optim.betas=[0.5,0.9]")
    trainer, rest = train(tmp_path / "run", cfg, resume=True)
    factor = lr_schedule(6, "cosine", 8, 0.1)
    assert [r["lr/model"] for r in rest] == pytest.approx([0.05 * factor(s) for s in range(4, 8)])
    group = trainer.optimizers["model"].param_groups[0]
    assert group["betas"] == (0.5, 0.9) and group["initial_lr"] == 0.05
    assert trainer.state_dict()["optimizers"]["model"]["state"]  # the moments were kept
    assert "train.optim.lr: 0.01 -> 0.05" in (tmp_path / "run" / "log.txt").read_text()


def test_unchanged_config_resumes_with_the_same_learning_rates(tmp_path):
    cfg = toy_config("train.max_steps=8")
    _, full = train(tmp_path / "full", cfg)
    train(tmp_path / "cut", toy_config("train.max_steps=4"))
    _, rest = train(tmp_path / "cut", cfg, resume=True)
    assert [r["lr/model"] for r in rest] == [r["lr/model"] for r in full if r["step"] > 4]


def test_optimizer_change_that_regroups_parameters_is_refused(tmp_path):
    train(tmp_path / "run", toy_config("train.max_steps=2"))
    with pytest.raises(ConfigError, match="weight_decay"):
        Trainer(ToyTask(), toy_config("train.max_steps=4", "train.optim.weight_decay=0.1"), tmp_path / "run", "cpu",
                resume=True, progress=False, console=False)


def test_precision_change_to_fp16_on_resume_starts_a_new_grad_scale(tmp_path):
    train(tmp_path / "run", toy_config("train.max_steps=2"))
    trainer = Trainer(ToyTask(), toy_config("train.max_steps=4", "train.precision=fp16"), tmp_path / "run", "cpu",
                      resume=True, progress=False, console=False)
    assert trainer.step == 2 and any("new one" in note for note in trainer._notes)


def test_a_locked_run_folder_is_refused(tmp_path, toy_experiment, capsys):
    results = tmp_path / "results"
    assert main.main(toy_argv(results, "train.max_steps=2")) == 0
    run_dir = results / "toy_t_shapes_3"
    with open(run_dir / LOCK_NAME, "a+") as holder:  # another process training in the folder
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.truncate(0)
        holder.write("4242\n")
        holder.flush()
        before = snapshot(run_dir)
        capsys.readouterr()
        for flag in ("--resume", "--auto_resume"):
            assert main.main(toy_argv(results, "train.max_steps=4", flag)) == 2
            assert "in use by process 4242" in one_line_error(capsys)
        assert snapshot(run_dir) == before
    assert main.main(toy_argv(results, "train.max_steps=4", "--resume")) == 0  # released: it runs
    assert (run_dir / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_temporaries_of_an_interrupted_write_are_removed_at_the_next_start(tmp_path, toy_experiment, capsys):
    results = tmp_path / "results"
    assert main.main(toy_argv(results, "train.max_steps=2")) == 0
    run_dir = results / "toy_t_shapes_3"
    partial = run_dir / ".model_4.pth.tmp99999"
    partial.write_bytes(b"PK\x03\x04 half a checkpoint")
    keep = run_dir / "notes.tmp1"  # not a name an atomic write uses
    keep.write_text("mine")
    assert main.main(toy_argv(results, "train.max_steps=4", "--resume")) == 0
    assert not partial.exists() and keep.exists()
    assert ".model_4.pth.tmp99999" in capsys.readouterr().err
    assert torch.load(run_dir / "model_last.pth", weights_only=True)["step"] == 4
