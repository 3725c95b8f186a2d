"""User errors: one ``error:`` line, exit status 2, no traceback and no folder left behind."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import main
import train
import validate
from evaluation import evaluate
from tests.toy_experiment import toy_argv, toy_experiment  # noqa: F401  (fixture)
from tiny_configs import TINY
from tools import checkpoint as ckpt


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_out_of_range_batch_size(tmp_path, capsys):
    assert main.main(["--exp", "first_stage", f"results_dir={tmp_path / 'r'}", "train.batch_size=0"]) == 2
    assert "train.batch_size must be at least 1, got 0" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_invalid_first_stage_switch_is_one_line(tmp_path, capsys):
    argv = ["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml",
            f"results_dir={tmp_path / 'r'}", "model.vqvae.merge=foo", *TINY]
    assert main.main(argv) == 2
    assert "model.vqvae.merge must be one of gate, warp; got 'foo'" in one_line_error(capsys)
    assert not any((tmp_path / "r").glob("*"))


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_cuda_is_refused_before_anything_is_made(tmp_path, no_cuda, capsys):
    results = f"results_dir={tmp_path / 'r'}"
    commands = [
        lambda: main.main(["--exp", "first_stage", "--device", "cuda", results]),
        lambda: main.main(["--exp", "first_stage", "device=cuda", results]),
        lambda: train.main_cli(["--config", "configs/ddpm/rsvp_s2_shapes64.yaml", "--tokens", str(tmp_path / "tok"),
                                "--device", "cuda", results]),
        lambda: validate.main(["--ckpt", "README.md", "--out", str(tmp_path / "v"), "--device", "cuda"]),
        lambda: evaluate.main(["--real", str(tmp_path), "--fake", str(tmp_path), "--device", "cuda",
                               "--out", str(tmp_path / "e" / "m.json")]),
    ]
    for command in commands:
        assert command() == 2
        assert "--device cuda" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_gan_from_a_checkpoint_of_another_stage_names_the_stage(first_stage_run, tmp_path, capsys):
    state = ckpt.load_checkpoint(first_stage_run / "model_last.pth")
    state["config"] = "exp: ddpm\nmodel:\n  net: rsvp_s2\n"  # what a DDPM checkpoint's config says
    ddpm_ckpt = ckpt.atomic_torch_save(state, tmp_path / "ddpm.pth")
    results = tmp_path / "results"
    argv = ["--exp", "gan", "--id", "g", "--first_model", str(ddpm_ckpt), f"results_dir={results}", *TINY]
    assert main.main(argv) == 2
    assert "is a checkpoint of --exp ddpm; this needs one of --exp first_stage or gan" in one_line_error(capsys)
    assert list(results.iterdir()) == []  # the run folder made for it is gone


def test_config_of_another_stage_is_named(tmp_path, capsys):
    argv = ["--exp", "first_stage", "--config", "configs/ddpm/rsvp_s2_shapes64.yaml", f"results_dir={tmp_path}"]
    assert main.main(argv) == 2
    err = one_line_error(capsys)
    assert "is a config for --exp ddpm, not for --exp first_stage" in err and "Unknown" not in err
    assert main.main(["--exp", "first_stage", f"results_dir={tmp_path}", "model.vqvae.hiden=3"]) == 2
    assert "Did you mean" in one_line_error(capsys)  # a plain typo is still a typo


def test_validate_with_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    assert validate.main(["--ckpt", "README.md", "--out", str(tmp_path / "v"), "--device", "cpu"]) == 2
    err = one_line_error(capsys)
    assert "not a PyTorch checkpoint" in err and "weights_only" not in err
    assert not (tmp_path / "v").exists()


def test_validate_with_a_first_stage_checkpoint_names_its_stage(first_stage_run, tmp_path, capsys):
    argv = ["--ckpt", str(first_stage_run / "model_last.pth"), "--out", str(tmp_path / "v"), "--device", "cpu"]
    assert validate.main(argv) == 2
    assert "is a checkpoint of --exp first_stage; this needs one of --exp ddpm" in one_line_error(capsys)


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty (0 bytes)"),
    (b"PK\x03\x04" + b"\0" * 200, "truncated or damaged"),
    (b"# a readme\n", "not a PyTorch checkpoint"),
])
def test_unreadable_checkpoints_state_a_reason(tmp_path, content, reason):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError, match=re.escape(reason)) as caught:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_a_folder_with_only_its_config_never_started(tmp_path, toy_experiment):
    results = tmp_path / "results"
    run_dir = results / "toy_t_shapes_3"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("left: by a command that failed\n")
    assert main.main(toy_argv(results, "train.max_steps=2")) == 0  # no --resume needed
    assert ckpt.load_checkpoint(run_dir / "model_last.pth")["step"] == 2
    assert main.main(toy_argv(results, "train.max_steps=2")) == 2  # now it has started


def test_evaluate_with_a_damaged_npy_names_the_file_not_pickles(tmp_path, capsys):
    frames = (torch.rand(6, 16, 16, 3) * 255).to(torch.uint8).numpy()
    for side in ("real", "fake"):
        (tmp_path / side).mkdir()
        np.save(tmp_path / side / "clip.npy", frames)
    (tmp_path / "fake" / "clip.npy").write_bytes(b"half a copy, no array header")  # numpy: "pickled data"
    argv = ["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "psnr",
            "--device", "cpu", "--out", str(tmp_path / "m.json")]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "clip.npy: not a readable .npy array" in err and "pickle" not in err
    assert not (tmp_path / "m.json").exists()


def test_token_sampling_flags_are_refused_for_a_diffusion_predictor():
    class DiffusionPredictor:  # no samples_tokens: RSVP, PVDM and LVDM sample with diffusion
        def settings(self, **options):
            return options

    from tools.config import ConfigError
    with pytest.raises(ConfigError, match="--top_k apply to methods that sample tokens"):
        validate.check_sample_options(DiffusionPredictor(), {"steps": 3, "top_k": 5}, "run/model_last.pth")
    validate.check_sample_options(DiffusionPredictor(), {"steps": 3}, "run/model_last.pth")  # diffusion flags pass
