"""tools/checkpoint.py: atomic writes, rotation, model_last, weight loading for later stages."""
import os

import pytest
import torch

from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools import checkpoint as ckpt
from tools.seeding import seed_everything
from tools.trainer import Trainer


def _state(step: int, value: float = 0.0) -> dict:
    return {"format": ckpt.FORMAT, "step": step, "nets": {"model": {"w": torch.full((2,), value)}},
            "ema": {}, "ema_updates": {}}


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model_last.pth"
    ckpt.atomic_torch_save(_state(1, 1.0), path)

    def broken_save(obj, handle):
        handle.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_torch_save(_state(2, 2.0), path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_last.pth"]  # no temporary left


def test_rotation_keeps_last_k_and_links_model_last(tmp_path):
    for step in (10, 20, 30, 40):
        ckpt.save_run_checkpoint(tmp_path, step, _state(step, float(step)), keep_last=2)
    assert [s for s, _ in ckpt.list_step_checkpoints(tmp_path)] == [30, 40]
    last = ckpt.load_checkpoint(tmp_path / "model_last.pth")
    assert last["step"] == 40
    assert os.path.samefile(tmp_path / "model_last.pth", tmp_path / "model_40.pth")


def test_keep_last_zero_writes_only_model_last(tmp_path):
    ckpt.save_run_checkpoint(tmp_path, 5, _state(5), keep_last=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_last.pth"]


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pth")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(ckpt.CheckpointError, match="not an RSVP training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="could not read"):
        ckpt.load_checkpoint(tmp_path / "garbage.pth")


def test_trainer_checkpoint_is_complete_and_weights_only_loadable(tmp_path):
    cfg = toy_config("train.max_steps=2", "train.ckpt_every=2")
    seed_everything(0)
    trainer = Trainer(ToyTask(gan=True, disc_start=0), cfg, tmp_path, "cpu", progress=False, console=False)
    trainer.fit(ToyVideos())
    state = torch.load(tmp_path / "model_last.pth", weights_only=True)
    assert set(state) == {"format", "step", "nets", "ema", "ema_updates", "optimizers", "schedulers", "scalers",
                          "rng", "world_size", "config", "task", "torch_version"}
    assert state["step"] == 2 and state["world_size"] == 1 and len(state["rng"]) == 1
    assert set(state["nets"]) == {"model", "disc"} and set(state["ema"]) == {"model"}
    assert set(state["optimizers"]) == set(state["schedulers"]) == set(state["scalers"]) == {"model", "disc"}
    assert state["ema_updates"] == {"model": 2}
    assert state["task"] == {"steps_seen": 2}
    assert "max_steps: 2" in state["config"]

    # A later stage loads just the weights (EMA by default) into a fresh net.
    net = ToyTask().model
    net.load_state_dict(ckpt.load_net_state(tmp_path / "model_last.pth", "model"))
    for key, value in net.state_dict().items():
        assert torch.equal(value, trainer.emas["model"].module.state_dict()[key])
    raw = ckpt.load_net_state(tmp_path / "model_last.pth", "model", ema=False)
    assert torch.equal(raw["encode.weight"], trainer.nets["model"].encode.weight)
    # No EMA for the discriminator: ema=None falls back to raw weights, ema=True refuses.
    assert torch.equal(ckpt.load_net_state(state, "disc")["net.0.weight"], state["nets"]["disc"]["net.0.weight"])
    with pytest.raises(ckpt.CheckpointError, match="no EMA weights for 'disc'"):
        ckpt.load_net_state(state, "disc", ema=True)
    with pytest.raises(ckpt.CheckpointError, match="no network 'unet'"):
        ckpt.load_net_state(state, "unet")
