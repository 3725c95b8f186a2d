"""The first-stage experiments end to end on tiny built-in data: train, GAN fine-tune, resume, extract."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import main
from tools.checkpoint import load_checkpoint, load_net_state
from tools.tokens import TokenDataset, read_meta
from tiny_configs import TINY

def losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def test_first_stage_run_writes_everything(first_stage_run):
    run = first_stage_run
    assert (run / "model_last.pth").is_file() and (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/psnr" in r]
    assert evals and all(np.isfinite(r["eval/psnr"]) and 0 <= r["eval/ssim"] <= 1 for r in evals)
    assert all("codebook/perplexity" in r and "decomp/swap_iou_motion_src" in r for r in evals)
    assert all(r["decomp/motion_sensitivity_psnr"] > 0 for r in evals)
    assert any("lpips" in r for r in records)
    samples = {p.name.rsplit("_", 1)[0] for p in (run / "samples").glob("*.gif")}
    assert {"recon", "decomposition"} <= samples


def test_gan_updates_both_networks_and_resumes_exactly(first_stage_run, tmp_path):
    common = ["--exp", "gan", "--first_stage_folder", str(first_stage_run), f"results_dir={tmp_path}",
              "model.gan.start_step=0", *TINY]
    assert main.main([*common, "--id", "full", "train.max_steps=4"]) == 0
    assert main.main([*common, "--id", "split", "train.max_steps=2"]) == 0
    assert main.main([*common, "--id", "split", "train.max_steps=4", "--resume"]) == 0
    full, split = tmp_path / "gan_full_shapes_42", tmp_path / "gan_split_shapes_42"
    assert losses(full) == losses(split) and len(losses(full)) == 4

    start = load_checkpoint(first_stage_run / "model_last.pth")
    after = load_checkpoint(full / "model_last.pth")
    assert set(after["nets"]) == {"model", "disc_frame", "disc_clip"}
    assert set(after["optimizers"]) == {"model", "disc"}
    moved = [k for k, v in start["nets"]["model"].items() if v.is_floating_point()
             and not torch.equal(v, after["nets"]["model"][k])]
    assert moved, "the generator did not change"
    two = load_checkpoint(full / "model_2.pth")
    for disc in ("disc_frame", "disc_clip"):  # both discriminators were trained between steps 2 and 4
        final, earlier = after["nets"][disc], two["nets"][disc]
        assert any(not torch.equal(final[k], earlier[k]) for k in final if final[k].is_floating_point()), disc
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert all("d_loss" in r and "g_loss" in r for r in records if "loss" in r)


def test_gan_refuses_a_different_architecture(first_stage_run, tmp_path, capsys):
    code = main.main(["--exp", "gan", "--first_stage_folder", str(first_stage_run), f"results_dir={tmp_path}",
                      *TINY, "model.vqvae.code_dim=8"])
    assert code == 2
    assert "do not match" in capsys.readouterr().err
    assert not (tmp_path / "gan_main_shapes_42").exists()  # no half-made run folder left behind


def test_gan_accepts_a_different_inference_setting(first_stage_run, tmp_path):
    """chunk_frames changes how the model runs, not its weights: a GAN run may set it differently."""
    assert main.main(["--exp", "gan", "--first_stage_folder", str(first_stage_run), f"results_dir={tmp_path}",
                      *TINY, "model.vqvae.chunk_frames=1", "train.max_steps=1", "train.sample_every=0"]) == 0


def test_extract_then_decode_reproduces_reconstruction(first_stage_run, tmp_path, capsys):
    out = tmp_path / "tokens"
    args = ["--exp", "extract", "--first_model", str(first_stage_run / "model_last.pth"), "--data", "shapes",
            "--out", str(out), "data.shapes.num_train=5", "data.shapes.num_test=3", "data.num_workers=0",
            "model.shard_size=2", "train.batch_size=2"]
    assert main.main(args) == 0
    meta = read_meta(out)
    assert meta["dtype"] == "uint16" and meta["splits"]["train"] == {"num_clips": 5, "num_shards": 3}
    assert np.load(out / "train" / "motion_00000.npy", mmap_mode="r").dtype == np.uint16
    assert main.main(args) == 0
    assert "already done" in capsys.readouterr().out

    from tools.datasets import build_dataset
    from tools.pretrained import load_first_stage

    trained = load_first_stage(first_stage_run / "model_last.pth")
    model, run_cfg = trained.model, trained.config
    tokens = TokenDataset(out, "test")
    test = build_dataset(OmegaConf.merge(run_cfg.data, {"shapes": {"num_test": 3}}), "test")
    with torch.no_grad():
        for start in (0, 2):  # the batches extraction used (train.batch_size=2)
            idx = range(start, min(start + 2, 3))
            video = torch.stack([test[i]["video"] for i in idx])
            own = model(video)["recon"]
            stored = {k: torch.stack([tokens[i][k] for i in idx]) for k in ("scene", "object", "motion")}
            assert torch.equal(model.decode_indices(stored), own)

    # A folder made from another checkpoint is refused.
    other = tmp_path / "other.pth"
    state = load_checkpoint(first_stage_run / "model_last.pth")
    state["step"] = 999
    torch.save(state, other)
    assert main.main([*args[:3], str(other), *args[4:]]) == 2
    assert "different extraction" in capsys.readouterr().err


def test_real_data_config_requires_lpips_weights(tmp_path, capsys):
    from evaluation.lpips_metric import default_backbone_path

    if default_backbone_path("vgg").is_file():
        pytest.skip("VGG weights are installed here: the missing-weights path cannot be exercised")
    code = main.main(["--exp", "first_stage", f"results_dir={tmp_path}", *TINY,
                      "model.perceptual.random_backbone=false", "model.perceptual.required=true"])
    err = capsys.readouterr().err
    assert code == 2 and "vgg16-397923af.pth" in err and "model.perceptual.weight=0" in err
    assert not any(tmp_path.iterdir())


def test_extract_prediction_pairs_use_only_observed_frames_for_the_condition(first_stage_run, tmp_path):
    from models.latent_space import pseudo_clip
    from tools.datasets import build_dataset
    from tools.pretrained import load_first_stage

    out = tmp_path / "pairs"
    assert main.main(["--exp", "extract", "--first_model", str(first_stage_run / "model_last.pth"), "--data", "shapes",
                      "--out", str(out), "data.shapes.num_train=2", "data.shapes.num_test=2", "data.num_workers=0",
                      "model.cond_frames=2", "model.splits=[test]", "train.batch_size=2"]) == 0
    meta = read_meta(out)
    assert meta["arrays"] == ["cond_scene", "cond_object", "cond_motion", "future_motion"] and meta["cond_frames"] == 2
    tokens = TokenDataset(out, "test")
    trained = load_first_stage(first_stage_run / "model_last.pth")
    model, run_cfg = trained.model, trained.config
    test = build_dataset(OmegaConf.merge(run_cfg.data, {"frames": 6, "shapes": {"num_test": 2}}), "test")
    video = torch.stack([test[i]["video"] for i in range(2)])  # 2 observed + 4 future frames
    with torch.no_grad():
        cond = model.encode(pseudo_clip(video[:, :, :2], 4))["indices"]
        future = model.encode(video[:, :, 2:])["indices"]
    stored = {k: torch.stack([tokens[i][k] for i in range(2)]) for k in meta["arrays"]}
    for k in ("scene", "object", "motion"):
        assert torch.equal(stored[f"cond_{k}"], cond[k])
    assert torch.equal(stored["future_motion"], future["motion"])


MOSO_CONFIGS = sorted(p for pattern in ("moso_*.yaml", "warp_*.yaml")
                      for p in (Path(__file__).resolve().parents[1] / "configs" / "first_stage").glob(pattern))


@pytest.mark.parametrize("path", MOSO_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_moso_config_loads_and_builds(path):
    from tools.experiments.first_stage import build_vqvae
    from tools.registry import experiment_config

    cfg = experiment_config("gan" if path.stem.endswith("_gan") else "first_stage", str(path), [])
    model = build_vqvae(cfg)
    assert model.resolution == cfg.data.resolution and model.frames == cfg.data.frames


@pytest.mark.parametrize("override, logged, bound", [
    ("model.warp_ce_weight=0.1", "warp_ce", 10),  # -log of a weight in a 9-offset window
    ("model.warp_copy_weight=1.0", "warp_copy", 4),  # a squared error of colours in [-1, 1]
])
def test_warp_losses_are_trained_and_logged(tmp_path, override, logged, bound):
    assert main.main(["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml", "--id", "w",
                      f"results_dir={tmp_path}", *TINY, "train.max_steps=2", "model.vqvae.warp_window=3", override]) == 0
    records = [json.loads(line) for line in (tmp_path / "first_stage_w_shapes_42" / "metrics.jsonl").read_text().splitlines()]
    values = [r[logged] for r in records if logged in r]
    assert len(values) == 2 and all(0 < value < bound for value in values)


def test_first_stage_fine_tunes_a_soft_warp_into_a_hard_one(tmp_path):
    """--exp first_stage given a trained run starts from its (EMA) weights; warp_choice shapes no
    weight, so the fine-tune may change it. With a negligible learning rate the weights stay the source's."""
    warp = ["--config", "configs/first_stage/warp_shapes32.yaml", f"results_dir={tmp_path}", *TINY,
            "model.vqvae.warp_window=3", "train.sample_every=0"]
    assert main.main(["--exp", "first_stage", "--id", "soft", *warp, "train.max_steps=2"]) == 0
    source = tmp_path / "first_stage_soft_shapes_42"
    assert main.main(["--exp", "first_stage", "--id", "hard", "--first_stage_folder", str(source), *warp,
                      "model.vqvae.warp_choice=hard", "train.max_steps=1", "train.optim.lr=1e-12",
                      "train.optim.weight_decay=0"]) == 0
    tuned = load_checkpoint(tmp_path / "first_stage_hard_shapes_42" / "model_last.pth")
    start = load_net_state(source / "model_last.pth", "model")
    assert all(torch.allclose(v.float(), tuned["nets"]["model"][k].float(), atol=1e-6) for k, v in start.items())
    assert tuned["task"]["step_offset"] == 2
    assert OmegaConf.load(tmp_path / "first_stage_hard_shapes_42" / "config.yaml").model.vqvae.warp_choice == "hard"
    # without a source the same command trains from scratch: other weights
    assert main.main(["--exp", "first_stage", "--id", "fresh", *warp, "model.vqvae.warp_choice=hard",
                      "train.max_steps=1", "train.optim.lr=1e-12"]) == 0
    fresh = load_checkpoint(tmp_path / "first_stage_fresh_shapes_42" / "model_last.pth")["nets"]["model"]
    assert any(not torch.allclose(v, fresh[k], atol=1e-3) for k, v in start.items() if v.is_floating_point())


def test_first_stage_fine_tune_refuses_a_different_architecture(first_stage_run, tmp_path, capsys):
    code = main.main(["--exp", "first_stage", "--first_stage_folder", str(first_stage_run), f"results_dir={tmp_path}",
                      *TINY, "model.vqvae.code_dim=8"])
    assert code == 2
    assert "first_stage config's model.vqvae/data do not match" in capsys.readouterr().err
    assert not (tmp_path / "first_stage_main_shapes_42").exists()


def test_warp_cross_entropy_is_refused_with_a_hard_warp(tmp_path, capsys):
    code = main.main(["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml", "--id", "cehard",
                      f"results_dir={tmp_path}", *TINY, "model.warp_ce_weight=0.1", "model.vqvae.warp_choice=hard"])
    assert code == 2
    assert "warp_choice: soft" in capsys.readouterr().err
    assert not (tmp_path / "first_stage_cehard_shapes_42").exists()
