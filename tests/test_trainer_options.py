"""Trainer speed options: train.channels_last and train.compile run and train like the default."""
import pytest
import torch

from tests.toy_task import ToyTask, ToyVideos, toy_config
from tools.checkpoint import load_checkpoint
from tools.seeding import seed_everything
from tools.trainer import Trainer, to_channels_last

# No dropout: channels-last activations put a dropout mask on other elements (a different but
# equally valid draw), which is not what these tests compare.
STEPS = ["train.max_steps=3", "train.ckpt_every=0", "train.log_every=1"]


def fit(run_dir, *overrides):
    seed_everything(0)
    trainer = Trainer(ToyTask(dropout=0.0, gan=True, disc_start=1), toy_config(*STEPS, *overrides), run_dir, "cpu",
                      progress=False, console=False)
    return trainer, trainer.fit(ToyVideos())


def assert_same_training(a, b, rel):
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "loss/rec", "grad_norm/model"):
            assert rb[key] == pytest.approx(ra[key], rel=rel), key


def test_to_channels_last_keeps_values_and_changes_strides():
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    to_channels_last(net)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last_3d) and not net[0].weight.is_contiguous()
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last) and not net[1].weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_channels_last_trains_like_the_default(tmp_path):
    _, base = fit(tmp_path / "base")
    trainer, fast = fit(tmp_path / "cl", "train.channels_last=true")
    assert trainer.nets["model"].encode.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert trainer.emas["model"].module.encode.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert_same_training(base, fast, rel=1e-4)
    a, b = load_checkpoint(tmp_path / "base/model_last.pth"), load_checkpoint(tmp_path / "cl/model_last.pth")
    for key, value in a["nets"]["model"].items():
        torch.testing.assert_close(b["nets"]["model"][key], value, rtol=1e-3, atol=1e-4)


def _compile_with(backend, monkeypatch):
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=backend, **kw))


def test_compile_wraps_the_trained_nets_only(tmp_path, monkeypatch):
    # aot_eager: the Dynamo graphs and AOT-autograd backward of the real path, without Inductor's
    # C++ build (which takes tens of seconds); the Inductor run is the slow test below.
    torch._dynamo.reset()
    _compile_with("aot_eager", monkeypatch)
    _, base = fit(tmp_path / "base")
    trainer, compiled = fit(tmp_path / "compiled", "train.compile=true")
    assert hasattr(trainer.train_nets["model"], "_orig_mod") and not hasattr(trainer.nets["model"], "_orig_mod")
    assert_same_training(base, compiled, rel=1e-4)
    state = load_checkpoint(tmp_path / "compiled/model_last.pth")
    assert set(state["nets"]["model"]) == set(trainer.nets["model"].state_dict())  # no _orig_mod. prefixes


@pytest.mark.slow
def test_compile_with_inductor_trains_like_the_default(tmp_path):
    torch._dynamo.reset()
    _, base = fit(tmp_path / "base")
    _, compiled = fit(tmp_path / "compiled", "train.compile=true")
    assert_same_training(base, compiled, rel=1e-3)
