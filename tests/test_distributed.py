"""tools/distributed.py and DDP training: two CPU processes (gloo) against one process with 2x batch."""
import os
import signal

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools import distributed as D
from tools.checkpoint import load_checkpoint
from tools.seeding import seed_everything
from tools.train_logging import read_metrics
from tools.trainer import Trainer, TrainingInterrupted

STEPS = 4
STOP_AFTER = 3  # rank 1 alone asks to stop during this step: both ranks must stop together


def test_resolve_device():
    assert D.resolve_device("cpu") == torch.device("cpu")
    assert D.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        D.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="use device=cpu"):
            D.resolve_device("cuda")


def test_single_process_helpers_are_no_ops(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert D.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert D.all_reduce_(torch.ones(2)).tolist() == [1.0, 1.0]
    D.barrier()
    net = nn.Linear(2, 2)
    assert D.unwrap(net) is net


class StopOnRankOne(ToyTask):
    def training_step(self, batch, step, ctx):
        if ctx.rank == 1 and step == STOP_AFTER - 1:
            ctx._trainer._stop_signal = signal.SIGTERM  # as if only rank 1 got the signal
        return super().training_step(batch, step, ctx)


def _worker(rank: int, world_size: int, tmp: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init_distributed("cpu", init_method=f"file://{tmp}/rendezvous", timeout_s=60)
    try:
        cfg = toy_config("train.batch_size=2", f"train.max_steps={STEPS}", "train.ckpt_every=100")
        seed_everything(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
        trainer = Trainer(StopOnRankOne(gan=True, disc_start=1, dropout=0.0, noise=0.0), cfg, f"{tmp}/run",
                          info.device, progress=False, console=False)
        assert isinstance(trainer.train_nets["model"], nn.parallel.DistributedDataParallel)
        outcome = "finished"
        try:
            trainer.fit(ToyVideos())
        except TrainingInterrupted as err:
            outcome = f"interrupted at {err.step}"
        torch.save({"outcome": outcome, "nets": {n: m.state_dict() for n, m in trainer.nets.items()},
                    "ema": trainer.emas["model"].module.state_dict()}, f"{tmp}/rank{rank}.pt")
    finally:
        D.cleanup()


def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["outcome"] for r in ranks] == [f"interrupted at {STOP_AFTER}"] * 2
    # (a) identical parameters on both ranks
    for name in ranks[0]["nets"]:
        for key, value in ranks[0]["nets"][name].items():
            assert torch.equal(value, ranks[1]["nets"][name][key]), (name, key)

    # (b) the same as one process with batch 2b (rank r takes draws r, r + 2, ...)
    cfg = toy_config("train.batch_size=4", f"train.max_steps={STOP_AFTER}", "train.ckpt_every=100")
    seed_everything(100)
    single = Trainer(ToyTask(gan=True, disc_start=1, dropout=0.0, noise=0.0), cfg, tmp_path / "single", "cpu",
                     progress=False, console=False)
    single_history = single.fit(ToyVideos())
    for name, net in single.nets.items():
        for key, value in net.state_dict().items():
            torch.testing.assert_close(ranks[0]["nets"][name][key], value, rtol=1e-4, atol=1e-6)
    for key, value in single.emas["model"].module.state_dict().items():
        torch.testing.assert_close(ranks[0]["ema"][key], value, rtol=1e-4, atol=1e-6)

    # Only rank 0 wrote the run folder; logged losses are means over ranks.
    ddp_records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in ddp_records] == [1, 2, 3]
    for ddp, one in zip(ddp_records, single_history):
        assert ddp["loss/rec"] == pytest.approx(one["loss/rec"], rel=1e-5)
    state = load_checkpoint(tmp_path / "run" / "model_last.pth")
    assert state["step"] == STOP_AFTER and state["world_size"] == 2 and len(state["rng"]) == 2
