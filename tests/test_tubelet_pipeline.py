"""The tubelet baseline through the shared commands: ``--exp first_stage`` (model.arch: tubelet, with
and without GAN), ``--exp extract``, ``--exp transformer`` from clips and from tokens, exact resume,
and ``validate.py`` on its checkpoint, one clip and beyond the trained length (tiny sizes, seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import main
import validate
from models.interface import FirstStage, Predictor
from models.tubelet_autoencoder import TubeletAutoencoder
from models.tubelet_predictor import TubeletPredictor
from tests.pipeline_checks import losses
from tests.tiny_configs import TINY_AUTOENCODER_RUN
from tools.pretrained import load_first_stage, load_predictor
from tools.tokens import TokenDataset, read_meta

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

TINY_TUBELET = [
    "--config", str(REPO / "configs/first_stage/tubelet_shapes32.yaml"), *TINY_AUTOENCODER_RUN,
    "model.tubelet.channels=8", "model.tubelet.res_blocks=1", "model.tubelet.pixel_channels=4",
    "model.tubelet.levels=[4,3,3]",
    "model.perceptual.random_backbone=true", "model.perceptual.frames=1", "model.eval_clips=2",
]
# 2 observed frames (1 time step) + 4 predicted (2 steps) of 8x8 tokens: sequences of 192 tokens.
TINY_TRANSFORMER = [
    "--config", str(REPO / "configs/transformer/tubelet_shapes32.yaml"),
    "data.num_workers=0", "data.shapes.num_train=8", "data.shapes.num_test=3",
    "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2", "train.sample_every=2",
    "train.optim.schedule=constant", "train.optim.warmup_steps=0",
    "model.frames=6", "model.cond_frames=2", "model.transformer.dim=16", "model.transformer.depth=2",
    "model.transformer.heads=2", "model.eval_clips=2",
]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("tubelet")
    assert main.main(["--exp", "first_stage", "--id", "tiny", f"results_dir={results}", "train.max_steps=4",
                      *TINY_TUBELET]) == 0
    return results / "first_stage_tiny_shapes_42" / "model_last.pth"


def train_transformer(first_stage: Path, results: Path, run_id: str, *overrides: str) -> Path:
    assert main.main(["--exp", "transformer", "--first_model", str(first_stage), f"results_dir={results}",
                      "--id", run_id, *TINY_TRANSFORMER, "train.max_steps=2", *overrides]) == 0
    return results / f"transformer_{run_id}_shapes_42" / "model_last.pth"


@pytest.fixture(scope="module")
def transformer(first_stage, tmp_path_factory) -> Path:
    return train_transformer(first_stage, tmp_path_factory.mktemp("transformer"), "tiny")


def test_first_stage_command_trains_the_tubelet_autoencoder(first_stage):
    run = first_stage.parent
    assert len(losses(run)) == 4 and all(l == l for l in losses(run))
    samples = [r for r in records(run) if "codebook/usage" in r]
    assert samples and 0 < samples[-1]["codebook/used_codes"] <= 36 and samples[-1]["codebook/usage"] <= 1
    trained = load_first_stage(first_stage)
    assert isinstance(trained.model, TubeletAutoencoder) and isinstance(trained.model, FirstStage)
    assert trained.config.model.arch == "tubelet" and trained.model.codebook_size == 36
    with torch.no_grad():
        out = trained.model.encode(torch.rand(1, 3, 4, 32, 32) * 2 - 1)
        assert out["indices"].shape == (1, 2, 8, 8) and trained.model.decode(out["codes"]).shape == (1, 3, 4, 32, 32)


def test_first_stage_resumes_exactly(first_stage, tmp_path):
    args = ["--exp", "first_stage", "--id", "tiny", f"results_dir={tmp_path}", *TINY_TUBELET]
    assert main.main([*args, "train.max_steps=2"]) == 0
    assert main.main([*args, "train.max_steps=4", "--resume"]) == 0
    assert losses(tmp_path / "first_stage_tiny_shapes_42") == losses(first_stage.parent)


def test_first_stage_with_gan(tmp_path):
    assert main.main(["--exp", "first_stage", "--id", "gan", f"results_dir={tmp_path}", "train.max_steps=2",
                      *TINY_TUBELET, "model.adversarial=true", "model.gan.channels=8", "model.gan.clip_channels=8",
                      "model.gan.n_layers=2", "train.sample_every=0"]) == 0
    logged = records(tmp_path / "first_stage_gan_shapes_42")
    assert all("d_loss" in r and "g_loss" in r for r in logged if "loss" in r)


def extract(first_stage: Path, out: Path) -> Path:
    """Token grids of 2 + 4 frames per clip: the transformer's training sequences."""
    assert main.main(["--exp", "extract", "--first_model", str(first_stage), "--data", "shapes", "--out", str(out),
                      "model.cond_frames=2", "data.shapes.num_train=5", "data.shapes.num_test=2",
                      "data.num_workers=0"]) == 0
    return out


def test_extract_writes_memory_mappable_token_grids(first_stage, tmp_path):
    out = extract(first_stage, tmp_path / "tokens")
    meta = read_meta(out)
    assert meta["arrays"] == ["tokens"] and meta["frames"] + meta["cond_frames"] == 6 and meta["codebook_size"] == 36
    train = TokenDataset(out, "train")
    assert len(train) == 5 and train[0]["tokens"].shape == (3, 8, 8) and int(train[0]["tokens"].max()) < 36
    assert isinstance(np.load(out / "train" / "tokens_00000.npy", mmap_mode="r"), np.memmap)
    assert np.load(out / "codebook.npy").shape == (36, 3)


def test_transformer_from_tokens_and_a_wrong_folder(first_stage, tmp_path):
    tokens = extract(first_stage, tmp_path / "tokens")
    ckpt = train_transformer(first_stage, tmp_path, "tokens", f"model.tokens={tokens}")
    assert len(losses(ckpt.parent)) == 2
    assert main.main(["--exp", "transformer", "--first_model", str(first_stage), f"results_dir={tmp_path}", "--id",
                      "bad", *TINY_TRANSFORMER, "model.frames=8", f"model.tokens={tokens}"]) == 2


def test_transformer_refuses_lengths_that_are_not_whole_tubelets(first_stage, tmp_path):
    base = ["--exp", "transformer", "--first_model", str(first_stage), f"results_dir={tmp_path}", *TINY_TRANSFORMER]
    assert main.main([*base, "--id", "odd", "model.cond_frames=3"]) == 2  # not a whole tubelet


def test_transformer_resumes_exactly(first_stage, transformer, tmp_path):
    train_transformer(first_stage, tmp_path, "tiny", "train.max_steps=1")
    train_transformer(first_stage, tmp_path, "tiny", "train.max_steps=2", "--resume")
    assert losses(tmp_path / "transformer_tiny_shapes_42") == losses(transformer.parent)


def test_transformer_checkpoint_is_a_predictor(transformer):
    predictor, cfg = load_predictor(transformer, CPU)
    assert isinstance(predictor, TubeletPredictor) and isinstance(predictor, Predictor) and cfg.exp == "transformer"
    assert (predictor.frames, predictor.cond_frames, predictor.resolution) == (4, 2, 32) and cfg.data.frames == 6
    samples = [r for r in records(transformer.parent) if "eval/psnr" in r]
    assert samples and "eval/psnr_copy_last_frame" in samples[-1]


@pytest.mark.parametrize("pred_frames", [4, 12])
def test_validate_runs_the_transformer(transformer, tmp_path, pred_frames):
    """One clip, and 3x the predicted frames of training (one autoregressive pass, ALiBi)."""
    args = ["--ckpt", str(transformer), "--num_videos", "3", "--pred_frames", str(pred_frames), "--batch_size", "2",
            "--metrics", "psnr,ssim", "--device", "cpu", "--out", str(tmp_path / "v"),
            "--sampler", "dpm", "--steps", "2"]  # as scripts/lib_stages.sh passes them: ignored
    assert validate.main(args) == 0
    result = json.loads((tmp_path / "v" / "metrics.json").read_text())
    for key in ("model", "copy_last_frame", "first_stage_ceiling"):
        assert len(result[key]["curves"]["psnr"]["mean"]) == pred_frames
    assert result["settings"]["sampling_kv_cache"] is True and result["settings"]["pred_frames"] == pred_frames
    assert result["settings"]["ignored_sample_options"] == ["sampler", "steps"]


@pytest.mark.parametrize("name", ["shapes32", "shapes64", "ucf101_256", "sky256"])
def test_shipped_configs_build_and_fit_each_other(name):
    """Each first-stage config builds its autoencoder; its transformer config's clips are whole tubelets."""
    from omegaconf import OmegaConf

    from tools.experiments.tubelet import TransformerTask, build_autoencoder, sequence_span
    from tools.registry import experiment_config

    fs_cfg = experiment_config("first_stage", REPO / f"configs/first_stage/tubelet_{name}.yaml")
    tr_cfg = experiment_config("transformer", REPO / f"configs/transformer/tubelet_{name}.yaml")
    assert sequence_span(tr_cfg, OmegaConf.create(OmegaConf.to_container(fs_cfg, resolve=True))) == tr_cfg.model.frames
    ae = build_autoencoder(fs_cfg)
    assert ae.codebook_size == 1000 and tr_cfg.data.resolution == fs_cfg.data.resolution
    if name.startswith("shapes"):  # the 256x256 transformer is 39M parameters: not built here
        task = TransformerTask(tr_cfg, ae)
        assert task.net.vocab == 1000 and task.observed_tokens == 64 * (4 // ae.tubelet[0])


def test_validate_takes_the_token_sampling_flags(transformer, tmp_path):
    args = ["--ckpt", str(transformer), "--num_videos", "2", "--batch_size", "2", "--metrics", "psnr",
            "--device", "cpu", "--out", str(tmp_path / "v"), "--temperature", "0.5", "--top_k", "7", "--top_p", "0.9"]
    assert validate.main(args) == 0
    settings = json.loads((tmp_path / "v" / "metrics.json").read_text())["settings"]
    assert (settings["sampling_temperature"], settings["sampling_top_k"], settings["sampling_top_p"]) == (0.5, 7, 0.9)


def test_validate_refuses_bad_token_sampling_values_before_writing(transformer, tmp_path, capsys):
    out = tmp_path / "v"
    args = ["--ckpt", str(transformer), "--num_videos", "2", "--device", "cpu", "--out", str(out), "--top_p", "1.5"]
    assert validate.main(args) == 2
    assert "top_p" in capsys.readouterr().err and not out.exists()
