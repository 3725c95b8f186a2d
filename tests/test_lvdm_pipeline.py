"""LVDM through the same commands as RSVP and PVDM: ``--exp first_stage`` and ``--exp ddpm`` with its
configs, ``validate.py`` on its checkpoint (autoregressive and hierarchical), exact resume, and no
future leakage (tiny sizes, seconds)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import main
from models.interface import FirstStage, Predictor, first_stage_ceiling, rollout
from models.lvdm_autoencoder import LVDMAutoencoder
from models.lvdm_predictor import HierarchicalPredictor, LVDMPredictor, VideoLatentSpace
from tests.pipeline_checks import (assert_prediction_ignores_the_future, assert_seeded_prediction, future_changed, losses, randomize,
                                   validate_metrics)
from tests.tiny_configs import TINY_AUTOENCODER_RUN, TINY_DDPM
from tools.config import ConfigError
from tools.pretrained import load_first_stage, load_predictor
from tools.registry import experiment_config

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

TINY_LVDM = [
    "--config", str(REPO / "configs/first_stage/lvdm_shapes32.yaml"),
    *TINY_AUTOENCODER_RUN,
    "model.lvdm.channels=8", "model.lvdm.max_mult=2",
    "model.perceptual.random_backbone=true", "model.perceptual.frames=2", "model.eval_clips=2",
]
# 2 observed frames = 1 latent frame, a clip of 4 frames = 2 latent frames: windows of 3.
TINY_LVDM_DDPM = ["--config", str(REPO / "configs/ddpm/lvdm_shapes32.yaml"), *TINY_DDPM,
                  "model.unet.channel_mults=[1,2]", "model.unet.max_relative=4", "model.lvdm.max_perturb=20",
                  "model.lvdm.sample_perturb=5"]
TINY_AE = {"frames": 4, "resolution": 32, "channels": 8, "max_mult": 2, "downsample": [2, 4, 4]}


@pytest.fixture(scope="module")
def lvdm_first_stage(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("lvdm")
    assert main.main(["--exp", "first_stage", "--id", "tiny", f"results_dir={results}", "train.max_steps=4",
                      *TINY_LVDM]) == 0
    return results / "first_stage_tiny_shapes_42" / "model_last.pth"


def train_ddpm(first_stage: Path, results: Path, run_id: str, *overrides: str) -> Path:
    assert main.main(["--exp", "ddpm", "--first_model", str(first_stage), f"results_dir={results}", "--id", run_id,
                      *TINY_LVDM_DDPM, "data.shapes.num_test=3", "train.max_steps=2", *overrides]) == 0
    return results / f"ddpm_{run_id}_shapes_42" / "model_last.pth"


@pytest.fixture(scope="module")
def lvdm_ddpm(lvdm_first_stage, tmp_path_factory) -> Path:
    return train_ddpm(lvdm_first_stage, tmp_path_factory.mktemp("lvdm_ddpm"), "tiny")


def test_first_stage_command_trains_the_lvdm_autoencoder(lvdm_first_stage):
    run = lvdm_first_stage.parent
    assert len(losses(run)) == 4 and all(l == l for l in losses(run))
    trained = load_first_stage(lvdm_first_stage)
    assert isinstance(trained.model, LVDMAutoencoder) and isinstance(trained.model, FirstStage)
    assert trained.config.exp == "first_stage" and trained.config.model.arch == "lvdm"
    clip = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        latent = trained.model.encode(clip)["codes"]
        assert latent.shape == (2, 4, 2, 8, 8) and trained.model.decode(latent).shape == clip.shape


def test_first_stage_resumes_exactly(lvdm_first_stage, tmp_path):
    """2 steps, stop, resume to 4 == the 4-step fixture run (same seed, same data)."""
    args = ["--exp", "first_stage", "--id", "tiny", f"results_dir={tmp_path}", *TINY_LVDM]
    assert main.main([*args, "train.max_steps=2"]) == 0
    assert main.main([*args, "train.max_steps=4", "--resume"]) == 0
    assert losses(tmp_path / "first_stage_tiny_shapes_42") == losses(lvdm_first_stage.parent)


def test_ddpm_resumes_exactly(lvdm_first_stage, lvdm_ddpm, tmp_path):
    """1 step, stop, resume to 2 == the 2-step fixture run (the perturbation levels and masks included)."""
    train_ddpm(lvdm_first_stage, tmp_path, "tiny", "train.max_steps=1")
    train_ddpm(lvdm_first_stage, tmp_path, "tiny", "train.max_steps=2", "--resume")
    assert losses(tmp_path / "ddpm_tiny_shapes_42") == losses(lvdm_ddpm.parent)


def test_ddpm_command_gives_a_deterministic_predictor(lvdm_ddpm):
    predictor, cfg = load_predictor(lvdm_ddpm, CPU)
    assert isinstance(predictor, LVDMPredictor) and isinstance(predictor, Predictor) and cfg.exp == "ddpm"
    assert (predictor.frames, predictor.cond_frames, predictor.resolution) == (4, 2, 32)
    assert cfg.data.frames == 6 and not hasattr(predictor, "rollout")  # plain autoregression
    observed = torch.rand(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = assert_seeded_prediction(predictor, observed, guidance=2.0, perturb=0)
    assert a.shape == (2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="perturb must be in"):
        predictor.predict(observed, torch.Generator().manual_seed(5), perturb=21)
    longer = rollout(predictor, observed, 6, torch.Generator().manual_seed(5))
    assert longer.shape[2] == 6 and torch.equal(longer[:, :, :4], a)
    future = torch.rand(2, 3, 6, 32, 32) * 2 - 1
    assert first_stage_ceiling(predictor, observed, future).shape == future.shape
    assert predictor.settings(perturb=3)["lvdm_perturb"] == 3


def test_no_future_leakage():
    """Frames after the observed ones change neither the condition nor (fixed seed) the prediction."""
    from tools.datasets import build_dataset
    from tools.experiments.lvdm import LVDMTask

    cfg = experiment_config("ddpm", REPO / "configs/ddpm/lvdm_shapes32.yaml", [*TINY_LVDM_DDPM[2:], "data.frames=6"])
    task = LVDMTask(cfg, VideoLatentSpace(LVDMAutoencoder(TINY_AE), scale=0.5))
    randomize(task.net)
    net = task.net.eval()
    test = build_dataset(cfg.data, "test")
    video = torch.stack([test[i]["video"] for i in range(2)])
    changed = future_changed(video, 2)
    (_, x0_a), (_, x0_b) = task.example({"video": video}), task.example({"video": changed})
    # the window's known latent frame (the condition) is the same; its generated frames are not
    assert torch.equal(x0_a[:, :, :1], x0_b[:, :, :1]) and not torch.equal(x0_a[:, :, 1:], x0_b[:, :, 1:])
    assert_prediction_ignores_the_future(task, net, video, changed)


def test_validate_runs_lvdm_like_rsvp(lvdm_ddpm, tmp_path):
    metrics = validate_metrics(lvdm_ddpm, tmp_path / "v", 6)
    assert metrics["settings"]["rollout_clips"] == 2 and metrics["settings"]["hierarchy"] is False


@pytest.fixture(scope="module")
def lvdm_hierarchy(lvdm_first_stage, tmp_path_factory) -> Path:
    """An interpolation model, then a keyframe model naming it (key stride 2)."""
    results = tmp_path_factory.mktemp("lvdm_hierarchy")
    interp = train_ddpm(lvdm_first_stage, results, "interp", "model.lvdm.role=interpolate", "model.lvdm.key_stride=2",
                        "model.lvdm.cond_prob=0.9")
    assert load_predictor(interp, CPU)[1].data.frames == 2 + 3 * 2
    return train_ddpm(lvdm_first_stage, results, "keys", "model.lvdm.key_stride=2", f"model.lvdm.interpolator={interp}")


def test_hierarchy_from_two_checkpoints(lvdm_first_stage, lvdm_hierarchy, tmp_path):
    """validate.py on a keyframe model that names its interpolator uses the hierarchy."""
    predictor, cfg = load_predictor(lvdm_hierarchy, CPU)
    assert isinstance(predictor, HierarchicalPredictor) and cfg.data.frames == 2 + 4 * 2
    settings = validate_metrics(lvdm_hierarchy, tmp_path / "v", 10, num_videos=2, metrics="psnr")["settings"]
    assert settings["hierarchy"] is True and settings["lvdm_key_stride"] == 2
    no_interp = train_ddpm(lvdm_first_stage, tmp_path, "keys_alone", "model.lvdm.key_stride=2")
    with pytest.raises(ConfigError, match="model.lvdm.interpolator"):
        load_predictor(no_interp, CPU)


def test_ablation_script_tabulates_the_variants(lvdm_ddpm, lvdm_hierarchy, tmp_path, capsys):
    from scripts.lvdm_ablation import main as ablation

    args = ["--ar", str(lvdm_ddpm), "--hierarchy", str(lvdm_hierarchy), "--guidance", "2", "--pred_frames", "4",
            "--num_videos", "2", "--num_samples", "1", "--steps", "2", "--metrics", "psnr", "--device", "cpu",
            "--out", str(tmp_path)]
    assert ablation(args) == 0
    table = capsys.readouterr().out
    for label in ("LVDM autoregressive |", "LVDM autoregressive, guidance 2 |", "LVDM hierarchical |",
                  "LVDM hierarchical, guidance 2 |", "copy last frame |"):
        assert label in table
    assert (tmp_path / "ablation.json").is_file()
