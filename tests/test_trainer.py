"""The shared Trainer: outputs of a run, optimizers and schedules, precision, EMA, stops."""
import math
import os
import signal

import pytest
import torch
from torch import nn

from models.ema import EMA, ema_decay_at
from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools.checkpoint import list_step_checkpoints, load_checkpoint
from tools.seeding import seed_everything
from tools.train_logging import read_metrics
from tools.trainer import (NonFiniteLossError, Trainer, TrainingInterrupted, build_optimizer, lr_schedule,
                           resolve_precision)


def make_trainer(run_dir, *overrides, resume=False, **task_kw):
    seed_everything(0)
    return Trainer(ToyTask(**task_kw), toy_config(*overrides), run_dir, "cpu", resume=resume,
                   progress=False, console=False)


def test_run_writes_logs_metrics_samples_and_rotated_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path, "train.max_steps=6", "train.log_every=2", "train.ckpt_every=2",
                           "train.sample_every=3", "train.keep_last=2")
    history = trainer.fit(ToyVideos())
    assert [r["step"] for r in history] == [2, 4, 6]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [2, 4, 6]
    for key in ("loss", "loss/rec", "grad_norm/model", "lr/model", "time/step"):
        assert math.isfinite(history[-1][key]), key
    assert history[-1]["loss"] < history[0]["loss"]
    assert [s for s, _ in list_step_checkpoints(tmp_path)] == [4, 6]
    assert load_checkpoint(tmp_path / "model_last.pth")["step"] == 6
    assert (tmp_path / "config.yaml").read_text().startswith("exp: toy")
    log = (tmp_path / "log.txt").read_text()
    assert "step 6/6" in log and "finished at step 6" in log
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "input_0000003.gif", "input_0000006.gif", "recon_0000003.gif", "recon_0000006.gif"]
    assert any((tmp_path / "tb").iterdir())


def test_refuses_to_overwrite_a_run_and_resume_after_the_end_is_a_no_op(tmp_path):
    make_trainer(tmp_path, "train.max_steps=2").fit(ToyVideos())
    with pytest.raises(FileExistsError, match="resume"):
        make_trainer(tmp_path, "train.max_steps=2")
    trainer = make_trainer(tmp_path, "train.max_steps=2", resume=True)
    assert trainer.step == 2 and trainer.fit(ToyVideos()) == []


def test_averaged_metrics_over_the_log_interval(tmp_path):
    per_step = make_trainer(tmp_path / "a", "train.max_steps=4").fit(ToyVideos())
    averaged = make_trainer(tmp_path / "b", "train.max_steps=4", "train.log_every=4").fit(ToyVideos())
    assert averaged[0]["loss"] == pytest.approx(sum(r["loss"] for r in per_step) / 4, rel=1e-6)


def test_lr_schedule_warmup_constant_and_cosine():
    constant = lr_schedule(4, "constant", 100, 0.1)
    assert [constant(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = lr_schedule(0, "cosine", 100, 0.1)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.55) and cosine(100) == pytest.approx(0.1)
    assert cosine(1000) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(0, "linear", 10, 0.1)


def test_build_optimizer_from_config():
    cfg = toy_config("train.optim.name=adam", "train.optim.weight_decay=0.05", "train.optim.betas=[0.5,0.9]",
                     "train.optim.warmup_steps=0", "train.optim.schedule=constant").train
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt, sched = build_optimizer(net.parameters(), cfg.optim, cfg.max_steps)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["betas"] == (0.5, 0.9)
    # Matrices decay, biases and norm scales do not.
    assert [len(g["params"]) for g in opt.param_groups] == [1, 3]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert sched.get_last_lr() == [0.01, 0.01]
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        build_optimizer(net.parameters(), toy_config("train.optim.name=sgd").train.optim, 10)


def test_resolve_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == (None, False)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_precision("fp16", cuda) == (torch.float16, True)
    assert resolve_precision("fp32", cuda) == (None, False)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains(tmp_path, precision):
    history = make_trainer(tmp_path, f"train.precision={precision}", "train.max_steps=4").fit(ToyVideos())
    assert all(math.isfinite(r["loss"]) for r in history)
    assert ("scale/model" in history[-1]) == (precision == "fp16")


def test_ema_copies_first_then_averages_and_copies_integer_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.75, warmup=False)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    net(torch.randn(4, 2))
    ema.update(net)  # first update copies
    assert torch.equal(ema.module[0].weight, net[0].weight)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    net(torch.randn(4, 2))
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert ema.module[1].num_batches_tracked.item() == 2  # copied, not truncated lerp
    assert ema.num_updates == 2 and not any(p.requires_grad for p in ema.module.parameters())


def test_ema_warmup_follows_the_usual_schedule():
    # decay at the update after n earlier ones: min(decay, (1 + n) / (10 + n))
    assert ema_decay_at(0.999, 1, warmup=True) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 1000, warmup=True) == pytest.approx(1001 / 1010)
    assert ema_decay_at(0.99, 10_000, warmup=True) == 0.99 and ema_decay_at(0.99, 1, warmup=False) == 0.99
    net = nn.Linear(1, 1, bias=False)
    ema = EMA(net, decay=0.999)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema.update(net)  # copies 0
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # 2/11 of the old weight stays
    assert float(ema.module.weight) == pytest.approx(9 / 11)
    for _ in range(1498):
        ema.update(net)
    # Without warm-up 0.999^1499 = 22 % of the step-1 weight would remain; with it almost none.
    assert 1 - float(ema.module.weight) < 0.01


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, "train.log_every=2", "train.ckpt_every=4", nan_at=5)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(ToyVideos())
    err = info.value
    assert (err.step, err.term) == (6, "loss") and math.isnan(err.value)
    assert "'loss' at step 6" in str(err) and "model_4.pth" in str(err)
    assert load_checkpoint(tmp_path / "model_last.pth")["step"] == 4
    assert [s for s, _ in list_step_checkpoints(tmp_path)] == [4]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [2, 4]
    assert "non-finite value nan for 'loss' at step 6" in (tmp_path / "log.txt").read_text()


def test_non_finite_loss_is_checked_before_every_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, "train.log_every=100", "train.ckpt_every=4", nan_at=2)
    with pytest.raises(NonFiniteLossError, match="at step 3") as info:
        trainer.fit(ToyVideos())
    assert info.value.last_checkpoint is None
    assert not (tmp_path / "model_last.pth").exists() and list_step_checkpoints(tmp_path) == []


def test_non_finite_weights_are_never_saved(tmp_path):
    trainer = make_trainer(tmp_path, "train.max_steps=2", "train.ckpt_every=2")
    trainer.fit(ToyVideos())
    with torch.no_grad():
        trainer.nets["model"].decode.bias[0] = float("inf")
    trainer.step = 3
    with pytest.raises(NonFiniteLossError, match="decode.bias of net model"):
        trainer.save_checkpoint()
    assert load_checkpoint(tmp_path / "model_last.pth")["step"] == 2


class SignalledTask(ToyTask):
    """Sends itself SIGINT inside training step 2, as a user pressing Ctrl-C would."""

    def training_step(self, batch, step, ctx):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().training_step(batch, step, ctx)


def test_sigint_finishes_the_step_saves_and_raises(tmp_path):
    seed_everything(0)
    trainer = Trainer(SignalledTask(), toy_config("train.ckpt_every=100"), tmp_path, "cpu",
                      progress=False, console=False)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(ToyVideos())
    assert info.value.step == 3 and info.value.exit_code == 130
    assert load_checkpoint(tmp_path / "model_last.pth")["step"] == 3
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
