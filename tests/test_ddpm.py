"""The second stage end to end on tiny built-in data: training, resume, variants, no future leakage."""
import json

import pytest
import torch
from omegaconf import OmegaConf

import main
from tests.tiny_configs import TINY_DDPM, TINY_NET
from tools.checkpoint import load_checkpoint



def ddpm_args(first_stage_run, results, *extra):
    return ["--exp", "ddpm", "--first_model", str(first_stage_run / "model_last.pth"),
            f"results_dir={results}", *TINY_DDPM, *extra]


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r]


def test_ddpm_trains_samples_and_resumes_exactly(first_stage_run, tmp_path):
    assert main.main(ddpm_args(first_stage_run, tmp_path, "--id", "full", "train.max_steps=4")) == 0
    assert main.main(ddpm_args(first_stage_run, tmp_path, "--id", "split", "train.max_steps=2")) == 0
    assert main.main(ddpm_args(first_stage_run, tmp_path, "--id", "split", "train.max_steps=4", "--resume")) == 0
    full, split = tmp_path / "ddpm_full_shapes_42", tmp_path / "ddpm_split_shapes_42"
    assert losses(full) == losses(split) and len(losses(full)) == 4
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/psnr" in r]
    assert evals and all("eval/psnr_copy_last_frame" in r for r in evals)
    assert list((full / "samples").glob("prediction_*.gif"))
    state = load_checkpoint(full / "model_last.pth")
    assert state["task"]["scale"] > 0 and set(state["nets"]) == {"model"}  # the first stage is not copied
    saved = OmegaConf.load(full / "config.yaml")
    assert saved.data.frames == 2 + 4 and saved.data.resolution == 32  # K observed + the first stage's T


@pytest.mark.parametrize("net", ["rsvp_s1", "rsvp_m"])
def test_variants_train_through_the_same_command(first_stage_run, tmp_path, net):
    assert main.main(ddpm_args(first_stage_run, tmp_path, "--id", net, f"model.net={net}", *TINY_NET[net],
                               "train.max_steps=1", "train.sample_every=0")) == 0
    assert len(losses(tmp_path / f"ddpm_{net}_shapes_42")) == 1


def test_no_future_leakage(first_stage_run):
    """Frames after the observed ones change neither the condition nor (fixed seed) the prediction."""
    from tools.config import RunConfig, build_config
    from tools.datasets import build_dataset
    from tools.experiments.ddpm import DDPMConfig, DDPMTask, fit_scale, load_latent_space, prepare_config

    cfg = build_config(RunConfig(exp="ddpm", model=DDPMConfig()), None,
                       [*TINY_DDPM, f"first_model={first_stage_run / 'model_last.pth'}"])
    prepare_config(cfg)
    space = load_latent_space(cfg)
    test = build_dataset(cfg.data, "test")
    fit_scale(space, cfg, test)
    torch.manual_seed(0)
    task = DDPMTask(cfg, space)
    net = task.net.eval()
    for p in net.parameters():  # the denoiser is zero-initialised: randomise it so outputs depend on inputs
        torch.nn.init.normal_(p, std=0.05)
    video = torch.stack([test[i]["video"] for i in range(2)])
    changed = video.clone()
    changed[:, :, 2:] = torch.rand_like(changed[:, :, 2:]) * 2 - 1  # other future frames
    obs_a, fut_a = task.split(video)
    obs_b, fut_b = task.split(changed)
    assert not torch.equal(fut_a, fut_b)
    cond_a, cond_b = space.condition(obs_a), space.condition(obs_b)
    assert all(torch.equal(cond_a[k], cond_b[k]) for k in cond_a)
    pred_a = task.predict(net, obs_a, torch.Generator().manual_seed(5))
    pred_b = task.predict(net, obs_b, torch.Generator().manual_seed(5))
    assert torch.equal(pred_a, pred_b)
    # ... while the prediction does depend on the observed frames and on the seed.
    other_obs = obs_a.flip(2)
    assert not torch.equal(task.predict(net, other_obs, torch.Generator().manual_seed(5)), pred_a)
    assert not torch.equal(task.predict(net, obs_a, torch.Generator().manual_seed(6)), pred_a)


def test_train_py_from_tokens_and_validate_py(first_stage_run, tmp_path, capsys):
    import train
    import validate

    tokens = tmp_path / "tokens"
    assert main.main(["--exp", "extract", "--first_model", str(first_stage_run / "model_last.pth"), "--data", "shapes",
                      "--out", str(tokens), "data.shapes.num_train=4", "data.shapes.num_test=2", "data.num_workers=0",
                      "model.cond_frames=2", "train.batch_size=2"]) == 0
    assert train.main_cli(["--config", "configs/ddpm/rsvp_s2_shapes64.yaml", "--tokens", str(tokens),
                           f"results_dir={tmp_path}", "--id", "tok", *TINY_DDPM, "train.max_steps=2"]) == 0
    run = tmp_path / "ddpm_tok_shapes_42"
    assert len(losses(run)) == 2

    out = tmp_path / "val"
    args = ["--ckpt", str(run / "model_last.pth"), "--num_videos", "2", "--num_samples", "2", "--steps", "2",
            "--pred_frames", "6", "--batch_size", "2", "--metrics", "psnr,ssim", "--out", str(out)]
    assert validate.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"psnr", "psnr_best_of_n", "ssim"} <= set(metrics["model"]["summary"])
    assert "psnr" in metrics["copy_last_frame"]["summary"] and "psnr" in metrics["first_stage_ceiling"]["summary"]
    assert metrics["settings"]["rollout_clips"] == 2  # 6 predicted frames from 4-frame clips
    names = sorted(p.name for p in (out / "videos").iterdir())
    assert "video00000.gif" in names and "video00000_s1.npy" in names and "video00000_s1.mp4" in names
    import numpy as np
    assert np.load(out / "videos" / "video00000_s0.npy").shape == (6, 32, 32, 3)
    assert (out / "grid.png").is_file()
    assert metrics["curves_png"] == "curves.png" and (out / "curves.png").stat().st_size > 0
    assert len(metrics["model"]["curves"]["psnr"]["mean"]) == 6  # one point per predicted frame
    first = (out / "videos" / "video00000_s0.npy").read_bytes()
    assert validate.main(args) == 0  # same seed, same output
    assert (out / "videos" / "video00000_s0.npy").read_bytes() == first
    capped = [*args[:3], "5", *args[4:]]  # more videos than the test split's 2: capped, and said so
    capsys.readouterr()
    assert validate.main(capped) == 0
    assert "--num_videos 5 capped at 2, the size of the test split" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["settings"]["num_videos"] == 2

    # Tokens from another first stage are refused.
    other = tmp_path / "other.pth"
    state = load_checkpoint(first_stage_run / "model_last.pth")
    state["step"] = 7
    torch.save(state, other)
    assert train.main_cli(["--config", "configs/ddpm/rsvp_s2_shapes64.yaml", "--tokens", str(tokens),
                           "--first_model", str(other), f"results_dir={tmp_path}", "--id", "bad", *TINY_DDPM]) == 2
