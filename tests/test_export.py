"""--export: a run's EMA weights as safetensors, and the loader that checks such a file."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import main
from tests.toy_experiment import toy_argv, toy_experiment  # noqa: F401  (fixture)
from tools import checkpoint as ckpt
from tools.export import load_exported


@pytest.fixture
def exported(tmp_path, toy_experiment):
    results = tmp_path / "results"
    assert main.main(toy_argv(results, "train.max_steps=4")) == 0
    path = tmp_path / "share" / "toy.safetensors"
    assert main.main(toy_argv(results, "--export", str(path))) == 0
    return path, results / "toy_t_shapes_3"


def test_export_holds_the_ema_weights_step_and_config(exported):
    path, run_dir = exported
    nets, cfg, meta = load_exported(path)
    state = ckpt.load_checkpoint(run_dir / "model_last.pth")
    assert meta["exp"] == "toy" and meta["step"] == "4" and meta["nets"] == "model:ema"
    assert nets["model"].keys() == state["ema"]["model"].keys()
    assert all(torch.equal(nets["model"][k], state["ema"]["model"][k]) for k in nets["model"])
    assert not all(torch.equal(nets["model"][k], state["nets"]["model"][k]) for k in nets["model"])  # EMA, not raw
    assert cfg.model.hidden == 8 and cfg.train.max_steps == 4


def test_the_loader_refuses_damaged_or_foreign_files(exported, tmp_path):
    path, _ = exported
    data = path.read_bytes()
    cases = {}
    cases["truncated"] = data[: len(data) // 2]
    cases["readme"] = b"# not weights\n"
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    cases["foreign"] = foreign.read_bytes()
    nan = tmp_path / "nan.safetensors"
    nets, _, meta = load_exported(path)
    tensors = {f"model.{k}": v.clone() for k, v in nets["model"].items()}
    next(t for t in tensors.values() if t.is_floating_point()).view(-1)[0] = float("nan")
    save_file(tensors, str(nan), metadata=meta)
    cases["nan"] = nan.read_bytes()
    reasons = {"truncated": "not a readable safetensors file", "readme": "not a readable safetensors file",
               "foreign": "not an RSVP weights export", "nan": "NaN or inf"}
    for name, content in cases.items():
        bad = tmp_path / f"{name}.bad"
        bad.write_bytes(content)
        with pytest.raises(ckpt.CheckpointError, match=reasons[name]):
            load_exported(bad)


def test_export_of_a_run_without_checkpoint_is_a_user_error(tmp_path, toy_experiment, capsys):
    assert main.main(toy_argv(tmp_path / "results", "--export", str(tmp_path / "x.safetensors"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "results").exists()
