"""One interface for every method (models/interface.py): first stages and predictors are loaded
from checkpoints through the experiment registry, and the entry points know no method."""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import main
import models
import validate
from models.interface import FirstStage, Predictor, first_stage_ceiling, rollout
from tests.tiny_configs import TINY_DDPM
from tools.checkpoint import FORMAT, CheckpointError, atomic_torch_save
from tools.config import ConfigError, DataConfig, RunConfig, ShapesConfig
from tools.pretrained import inference_autocast, inference_layout, load_first_stage, load_predictor
from tools.registry import EXPERIMENTS, Experiment, experiment_config, get_experiment, register_experiment
from tools.video_io import to_uint8

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ddpm_ckpt(first_stage_run, tmp_path_factory):
    results = tmp_path_factory.mktemp("iface")
    assert main.main(["--exp", "ddpm", "--first_model", str(first_stage_run / "model_last.pth"),
                      f"results_dir={results}", "--id", "iface", *TINY_DDPM, "data.shapes.num_test=3",
                      "train.max_steps=1", "train.sample_every=0"]) == 0
    return results / "ddpm_iface_shapes_42" / "model_last.pth"


def test_a_checkpoint_gives_a_predictor_that_is_deterministic(ddpm_ckpt):
    predictor, cfg = load_predictor(ddpm_ckpt, CPU)
    assert isinstance(predictor, Predictor) and cfg.exp == "ddpm"
    assert (predictor.frames, predictor.cond_frames, predictor.resolution) == (4, 2, 32)
    for p in predictor.net.parameters():  # the zero-initialised denoiser would hide the generator
        torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(0))
    observed = torch.rand(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = predictor.predict(observed, torch.Generator().manual_seed(5))
    assert a.shape == (2, 3, 4, 32, 32) and a.abs().max() <= 1
    assert torch.equal(predictor.predict(observed, torch.Generator().manual_seed(5)), a)
    assert not torch.equal(predictor.predict(observed, torch.Generator().manual_seed(6)), a)
    longer = rollout(predictor, observed, 6, torch.Generator().manual_seed(5))
    assert longer.shape[2] == 6 and torch.equal(longer[:, :, :4], a)  # the first clip is the one-clip prediction
    future = torch.rand(2, 3, 6, 32, 32) * 2 - 1
    assert first_stage_ceiling(predictor, observed, future).shape == future.shape


def test_validate_writes_what_the_experiments_predictor_predicts(ddpm_ckpt, tmp_path):
    """validate.py's predictions are the registered experiment's ``load_predictor(ckpt).predict``
    rolled out with validate's per-(seed, batch, sample) generators, bit for bit."""
    args = ["--ckpt", str(ddpm_ckpt), "--num_videos", "3", "--num_samples", "2", "--steps", "2", "--pred_frames", "6",
            "--batch_size", "2", "--metrics", "psnr", "--device", "cpu", "--seed", "3", "--out", str(tmp_path / "v")]
    assert validate.main(args) == 0
    # The experiment owns its loading; tools.pretrained then puts the networks in their inference layout.
    predictor = inference_layout(get_experiment("ddpm").load_predictor(ddpm_ckpt, CPU))
    _, cfg = load_predictor(ddpm_ckpt, CPU)
    data = OmegaConf.merge(cfg.data, {"frames": 2 + 6})
    from tools.datasets import build_dataset

    test = build_dataset(data, "test", cfg.seed)
    for batch_index, videos in validate.shard_batches(3, 2):
        observed = torch.stack([test[i]["video"] for i in videos])[:, :, :2]
        for s in range(2):
            frames = rollout(predictor, observed, 6, validate.sample_generator(3, batch_index, s), steps=2)
            for row, i in enumerate(videos):
                written = np.load(tmp_path / "v" / "videos" / f"video{i:05d}_s{s}.npy")
                assert np.array_equal(written, to_uint8(frames[row].clamp(-1, 1)))
    settings = json.loads((tmp_path / "v" / "metrics.json").read_text())["settings"]
    assert settings["snap_to_codebook"] is False and settings["steps"] == 2 and settings["rollout_clips"] == 2


def test_validate_precision_bf16_predicts_under_autocast_and_records_it(ddpm_ckpt, tmp_path):
    common = ["--ckpt", str(ddpm_ckpt), "--num_videos", "2", "--steps", "2", "--metrics", "psnr", "--device", "cpu"]
    for precision in ("fp32", "bf16"):
        assert validate.main([*common, "--precision", precision, "--out", str(tmp_path / precision)]) == 0
        settings = json.loads((tmp_path / precision / "metrics.json").read_text())["settings"]
        assert settings["precision"] == precision
    predictor = inference_layout(get_experiment("ddpm").load_predictor(ddpm_ckpt, CPU))
    _, cfg = load_predictor(ddpm_ckpt, CPU)
    from tools.datasets import build_dataset

    test = build_dataset(OmegaConf.merge(cfg.data, {"frames": 2 + 4}), "test", cfg.seed)
    observed = torch.stack([test[i]["video"] for i in range(2)])[:, :, :2]
    with inference_autocast("bf16", CPU):
        frames = rollout(predictor, observed, 4, validate.sample_generator(0, 0, 0), steps=2).float()
    bf16 = np.load(tmp_path / "bf16" / "videos" / "video00000_s0.npy")
    assert np.array_equal(bf16, to_uint8(frames[0].clamp(-1, 1)))
    assert not np.array_equal(bf16, np.load(tmp_path / "fp32" / "videos" / "video00000_s0.npy"))


def test_precision_compare_runs_validate_at_both_precisions(ddpm_ckpt, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    from precision_compare import main as compare

    doc = tmp_path / "doc.md"
    doc.write_text("<!-- precision:start -->\n<!-- precision:end -->\n")
    assert compare(["--ckpt", str(ddpm_ckpt), "--out", str(tmp_path / "p"), "--doc", str(doc), "--num_videos", "2",
                    "--steps", "2", "--metrics", "psnr,ssim", "--device", "cpu"]) == 0
    for precision in ("fp32", "bf16"):
        assert json.loads((tmp_path / "p" / precision / "metrics.json").read_text())["settings"]["precision"] == precision
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ") and "precision" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| fp32", "| bf16", "| copy last frame"]
    for row in rows[:2]:  # psnr, ssim, then the wall time
        psnr, ssim, seconds = row.split(" | ")[1:4]
        assert 0 < float(psnr) < 100 and -1 <= float(ssim) <= 1 and seconds.endswith(" s |")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        compare(["--ckpt", str(ddpm_ckpt), "--out", str(tmp_path / "q"), "--precision", "bf16"])
    assert "leave it out" in capsys.readouterr().err and not (tmp_path / "q").exists()


def test_a_first_stage_checkpoint_gives_a_first_stage(first_stage_run, ddpm_ckpt):
    trained = load_first_stage(first_stage_run / "model_last.pth")
    model = trained.model
    assert isinstance(model, FirstStage) and not model.training and trained.config.exp == "first_stage"
    clip = torch.rand(2, 3, model.frames, model.resolution, model.resolution) * 2 - 1
    with torch.no_grad():
        assert model.decode(model.encode(clip)["codes"]).shape == clip.shape
    assert set(trained.tokens(0).shapes) == {"scene", "object", "motion"}
    with pytest.raises(CheckpointError, match="is a checkpoint of --exp ddpm; this needs one of --exp first_stage or gan"):
        load_first_stage(ddpm_ckpt)
    with pytest.raises(ConfigError, match="one of --exp ddpm"):  # a CheckpointError is a ConfigError: exit 2
        load_predictor(first_stage_run / "model_last.pth", CPU)


def test_each_denoiser_has_its_own_config_schema():
    cfg = experiment_config("ddpm", None, ["model.net=rsvp_m", "model.unet.context_channels=8"])
    assert cfg.model.unet.context_channels == 8
    with pytest.raises(ConfigError, match="Unknown config key 'model.unet.context_channels'"):
        experiment_config("ddpm", None, ["model.net=rsvp_s2", "model.unet.context_channels=8"])
    with pytest.raises(ConfigError, match="model.net: Unknown model 'rsvp_s9'. Did you mean: rsvp_s2"):
        experiment_config("ddpm", None, ["model.net=rsvp_s9"])
    for path in sorted((REPO / "configs" / "ddpm").glob("*.yaml")):  # every shipped config still loads
        model = experiment_config("ddpm", path).model
        assert OmegaConf.get_type(model.unet) is models.get_model_class(model.net).config_class
    # A config saved when every denoiser shared one superset schema still builds its denoiser.
    from tools.experiments.ddpm import denoiser_config
    saved = OmegaConf.create({"net": "rsvp_s1", "unet": {"channels": 8, "context_channels": 16, "frame_embed": False}})
    assert denoiser_config(saved) == type(denoiser_config(saved))(channels=8, frame_embed=False)


@dataclass
class CopyLast:
    """A method in a few lines: the last observed frame plus generator noise; its 'first stage' is exact."""

    frames: int = 3
    cond_frames: int = 2
    resolution: int = 32

    def predict(self, observed, generator=None, **options):
        last = observed[:, :, -1:].expand(-1, -1, self.frames, -1, -1)
        return last + 0.01 * torch.randn(last.shape, generator=generator)

    def reconstruct(self, observed, future):
        return future

    def settings(self, **options):
        return {"method": "copy_last", **options}


def test_a_new_method_needs_no_entry_point_change(tmp_path):
    """An experiment whose checkpoints hold a predictor: validate.py runs it as it runs RSVP."""
    register_experiment(Experiment(name="copy_last", model_schema=dict, run=lambda *a, **k: 0,
                                   load_predictor=lambda state, device, raw_weights=False: CopyLast()))
    try:
        cfg = OmegaConf.structured(RunConfig(exp="copy_last", data=DataConfig(
            resolution=32, num_workers=0, shapes=ShapesConfig(num_train=2, num_test=2))))
        ckpt = atomic_torch_save({"format": FORMAT, "step": 0, "nets": {}, "config": OmegaConf.to_yaml(cfg)},
                                 tmp_path / "model_last.pth")
        args = ["--ckpt", str(ckpt), "--num_videos", "2", "--pred_frames", "5", "--metrics", "psnr",
                "--device", "cpu", "--out", str(tmp_path / "v")]
        assert validate.main(args) == 0
        metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())
        assert metrics["settings"]["method"] == "copy_last" and metrics["settings"]["rollout_clips"] == 2
        assert metrics["first_stage_ceiling"]["summary"]["psnr"] > 90  # reconstruct is exact
    finally:
        EXPERIMENTS.pop("copy_last", None)


@pytest.mark.parametrize("path", ["validate.py", "main.py", "train.py", "tools/experiments/extract.py",
                                  "tools/pretrained.py", "tools/registry.py", "models/interface.py"])
def test_entry_points_name_no_method(path):
    """No entry point imports a method's module or names its latent streams."""
    source = (REPO / path).read_text()
    code = re.sub(r'(?s)""".*?"""|#[^\n]*', "", source)  # docstrings and comments may give examples
    for name in ("DDPMTask", "tools.experiments.ddpm", "tools.experiments.first_stage", "latent_space",
                 "MosoVQVAE", "'scene'", '"scene"', '"motion"', "cond_scene", "future_motion", "rsvp_s2"):
        assert name not in code, f"{path} names {name}"
