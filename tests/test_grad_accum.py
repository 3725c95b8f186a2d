"""train.grad_accum: batch b x k micro-batches equals batch b*k; resume stays exact."""
from __future__ import annotations

import pytest
import torch

from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools import checkpoint as ckpt
from tools.seeding import seed_everything
from tools.trainer import Trainer, split_batch


def train(run_dir, cfg, resume=False, **task_kw):
    seed_everything(0)
    trainer = Trainer(ToyTask(**task_kw), cfg, run_dir, "cpu", resume=resume, progress=False, console=False)
    return trainer, trainer.fit(ToyVideos())


def weights(run_dir):
    state = ckpt.load_checkpoint(run_dir / "model_last.pth")
    return {**state["nets"]["model"], **{f"ema.{k}": v for k, v in state["ema"]["model"].items()}}


@pytest.mark.parametrize("gan", [False, True])
def test_accumulated_micro_batches_equal_the_big_batch(tmp_path, gan):
    # No dropout or input noise: the random draws would differ between one and two forward passes.
    kw = dict(dropout=0.0, noise=0.0, gan=gan, disc_start=100)  # disc never on: exact for the GAN shape too
    _, big = train(tmp_path / "big", toy_config("train.batch_size=8", "train.max_steps=6"), **kw)
    _, acc = train(tmp_path / "acc", toy_config("train.batch_size=4", "train.grad_accum=2", "train.max_steps=6"), **kw)
    assert [r["loss"] for r in acc] == pytest.approx([r["loss"] for r in big], rel=1e-5)
    # Adam hides a wrongly scaled gradient in the weights; the logged norm does not.
    assert [r["grad_norm/model"] for r in acc] == pytest.approx([r["grad_norm/model"] for r in big], rel=1e-4)
    a, b = weights(tmp_path / "acc"), weights(tmp_path / "big")
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_micro_batches_differ_from_one_small_batch(tmp_path):
    """The equivalence above is not vacuous: without accumulation, batch 4 trains differently."""
    kw = dict(dropout=0.0, noise=0.0)
    train(tmp_path / "big", toy_config("train.batch_size=8", "train.max_steps=6"), **kw)
    train(tmp_path / "small", toy_config("train.batch_size=4", "train.max_steps=6"), **kw)
    a, b = weights(tmp_path / "small"), weights(tmp_path / "big")
    assert not all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in b)


def test_gan_with_accumulation_trains_both_networks_and_resumes_exactly(tmp_path):
    common = ["train.batch_size=2", "train.grad_accum=2", "train.optim.schedule=constant"]  # max_steps-free LR
    cfg = toy_config(*common, "train.max_steps=8")
    _, full = train(tmp_path / "full", cfg, gan=True, disc_start=1)
    assert {"loss/disc", "grad_norm/disc", "grad_norm/model"} <= set(full[-1])
    train(tmp_path / "cut", toy_config(*common, "train.max_steps=4"), gan=True, disc_start=1)
    _, rest = train(tmp_path / "cut", cfg, resume=True, gan=True, disc_start=1)
    assert [r["loss"] for r in rest] == [r["loss"] for r in full if r["step"] > 4]
    a, b = weights(tmp_path / "cut"), weights(tmp_path / "full")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_split_batch_keeps_dicts_lists_and_tuples():
    batch = {"video": torch.arange(8).view(4, 2), "index": torch.arange(4), "name": ["a", "b", "c", "d"],
             "pair": (torch.zeros(4), torch.ones(4, 1))}
    first, second = split_batch(batch, 2)
    assert first["video"].tolist() == [[0, 1], [2, 3]] and second["index"].tolist() == [2, 3]
    assert first["name"] == ["a", "b"] and second["name"] == ["c", "d"]
    assert second["pair"][1].shape == (2, 1) and isinstance(second["pair"], tuple)
