"""PVDM through the same commands as RSVP: ``--exp first_stage`` and ``--exp ddpm`` with its configs,
``validate.py`` on its checkpoint, exact resume, and no future leakage (tiny sizes, seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import main
from models.interface import FirstStage, Predictor, first_stage_ceiling, rollout
from models.pvdm_autoencoder import PVDMAutoencoder
from models.pvdm_predictor import PVDMPredictor
from tests.pipeline_checks import (assert_prediction_ignores_the_future, assert_seeded_prediction, future_changed, losses, randomize,
                                   validate_metrics)
from tests.tiny_configs import TINY_AUTOENCODER_RUN, TINY_DDPM
from tools.pretrained import first_stage_config, load_first_stage, load_predictor
from tools.registry import experiment_config

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

TINY_PVDM = [
    "--config", str(REPO / "configs/first_stage/pvdm_shapes32.yaml"),
    *TINY_AUTOENCODER_RUN,
    "model.pvdm.dim=16", "model.pvdm.heads=2", "model.pvdm.depth=1", "model.pvdm.decoder_depth=1",
    "model.pvdm.proj_depth=1", "model.pvdm.proj_heads=2", "model.pvdm.proj_mlp_dim=16",
    "model.perceptual.random_backbone=true", "model.perceptual.frames=2", "model.eval_clips=2",
]
TINY_PVDM_DDPM = ["--config", str(REPO / "configs/ddpm/pvdm_shapes32.yaml"), *TINY_DDPM, "model.unet.cross_levels=[1]"]


@pytest.fixture(scope="module")
def pvdm_first_stage(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("pvdm")
    assert main.main(["--exp", "first_stage", "--id", "tiny", f"results_dir={results}", "train.max_steps=4",
                      *TINY_PVDM]) == 0
    return results / "first_stage_tiny_shapes_42" / "model_last.pth"


@pytest.fixture(scope="module")
def pvdm_ddpm(pvdm_first_stage, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("pvdm_ddpm")
    assert main.main(["--exp", "ddpm", "--first_model", str(pvdm_first_stage), f"results_dir={results}",
                      "--id", "tiny", *TINY_PVDM_DDPM, "data.shapes.num_test=3", "train.max_steps=2"]) == 0
    return results / "ddpm_tiny_shapes_42" / "model_last.pth"


def test_first_stage_command_trains_the_pvdm_autoencoder(pvdm_first_stage):
    run = pvdm_first_stage.parent
    assert len(losses(run)) == 4 and all(l == l for l in losses(run))
    trained = load_first_stage(pvdm_first_stage)
    assert isinstance(trained.model, PVDMAutoencoder) and isinstance(trained.model, FirstStage)
    assert trained.config.exp == "first_stage" and trained.config.model.arch == "pvdm"
    assert first_stage_config(pvdm_first_stage) == trained.config  # read without the weights
    clip = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        latent = trained.model.encode(clip)["codes"]
        channels = trained.config.model.pvdm.embed_dim
        assert latent.shape == (2, channels, 8 * 8 + 2 * 4 * 8) and trained.model.decode(latent).shape == clip.shape
    samples = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/psnr" in r and "decomp/temporal_variance_ratio" in r for r in samples)


def test_first_stage_resumes_exactly(pvdm_first_stage, tmp_path):
    """2 steps, stop, resume to 4 == the 4-step fixture run (same seed, same data)."""
    args = ["--exp", "first_stage", "--id", "tiny", f"results_dir={tmp_path}", *TINY_PVDM]
    assert main.main([*args, "train.max_steps=2"]) == 0
    assert main.main([*args, "train.max_steps=4", "--resume"]) == 0
    assert losses(tmp_path / "first_stage_tiny_shapes_42") == losses(pvdm_first_stage.parent)


def test_ddpm_command_gives_a_deterministic_predictor(pvdm_ddpm):
    predictor, cfg = load_predictor(pvdm_ddpm, CPU)
    assert isinstance(predictor, PVDMPredictor) and isinstance(predictor, Predictor) and cfg.exp == "ddpm"
    assert (predictor.frames, predictor.cond_frames, predictor.resolution) == (4, 2, 32)
    observed = torch.rand(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = assert_seeded_prediction(predictor, observed, guidance=2.0)
    assert a.shape == (2, 3, 4, 32, 32)
    longer = rollout(predictor, observed, 6, torch.Generator().manual_seed(5))
    assert longer.shape[2] == 6 and torch.equal(longer[:, :, :4], a)
    future = torch.rand(2, 3, 6, 32, 32) * 2 - 1
    assert first_stage_ceiling(predictor, observed, future).shape == future.shape
    with pytest.raises(ValueError, match="codebook"):
        predictor.predict(observed, torch.Generator().manual_seed(5), snap=True)


def test_no_future_leakage():
    """Frames after the observed ones change neither the condition nor (fixed seed) the prediction."""
    from tools.datasets import build_dataset
    from tools.experiments.pvdm import PlaneLatentSpace, PVDMTask

    cfg = experiment_config("ddpm", REPO / "configs/ddpm/pvdm_shapes32.yaml", [*TINY_PVDM_DDPM[2:], "data.frames=6"])
    ae = PVDMAutoencoder({"frames": 4, "resolution": 32, "patch_size": 4, "stem": "conv", "dim": 16, "heads": 2,
                          "depth": 1, "decoder_depth": 1, "proj_depth": 1, "proj_heads": 2, "proj_mlp_dim": 16})
    space = PlaneLatentSpace(ae, scale=0.5)
    task = PVDMTask(cfg, space)
    randomize(task.net)
    net = task.net.eval()
    test = build_dataset(cfg.data, "test")
    video = torch.stack([test[i]["video"] for i in range(2)])
    changed = future_changed(video, 2)
    (cond_a, x0_a), (cond_b, x0_b) = task.example({"video": video}), task.example({"video": changed})
    assert torch.equal(cond_a, cond_b) and not torch.equal(x0_a, x0_b)
    assert_prediction_ignores_the_future(task, net, video, changed)


def test_validate_runs_pvdm_like_rsvp(pvdm_ddpm, tmp_path):
    metrics = validate_metrics(pvdm_ddpm, tmp_path / "v", 6)
    assert metrics["settings"]["rollout_clips"] == 2 and metrics["settings"]["guidance"] == 1.0
    assert (tmp_path / "v" / "grid.png").is_file()


def test_a_denoiser_needs_its_own_first_stage(first_stage_run, pvdm_first_stage, tmp_path, capsys):
    """RSVP's denoiser on a PVDM first stage, or PVDM's on a MOSO one: one clear error, no run folder."""
    pairs = [(pvdm_first_stage, TINY_DDPM, "MosoVQVAE"),
             (first_stage_run / "model_last.pth", TINY_PVDM_DDPM, "PVDMAutoencoder")]
    for ckpt, overrides, wanted in pairs:
        assert main.main(["--exp", "ddpm", "--first_model", str(ckpt), f"results_dir={tmp_path}", *overrides,
                          "train.max_steps=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and wanted in err[0]
    assert not any(tmp_path.iterdir())
