"""scripts/first_stage_report.py: the first stage's checklist on test clips (numbers, table, JSON)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from first_stage_report import binomial_blur, main as report, target_lines  # noqa: E402


def test_first_stage_report_scores_every_item(first_stage_run, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert report(["--first_model", str(first_stage_run / "model_last.pth"), "--cond_frames", "2",
                   "--num_clips", "4", "--batch", "2", "--out", str(out)]) == 0
    numbers = json.loads(out.read_text())
    for key in ("recon_psnr", "temporal_mean_psnr", "temporal_variance_ratio", "other_motion_psnr",
                "swap_iou_motion_src", "swap_iou_appearance_src", "ceiling_psnr", "copy_last_psnr"):
        assert isinstance(numbers[key], float), key
    assert 0 <= numbers["temporal_variance_ratio"] and 0 < numbers["copy_last_psnr"] < 100
    # the blur reference: some variance lost, a finite PSNR
    assert 0 < numbers["blurred_truth_tv_ratio"] < 1 and 10 < numbers["blurred_truth_psnr"] < 100
    printed = capsys.readouterr().out
    assert "| temporal-mean bound PSNR" in printed and "| first-stage ceiling PSNR" in printed
    assert numbers["data"] == "shapes" and "| temporal-variance ratio | ≥ 0.8 |" in printed


def test_targets_are_judged_from_the_numbers():
    r = {"data": "shapes", "resolution": 64, "frames": 16, "recon_psnr": 26.2, "temporal_mean_psnr": 23.0,
         "temporal_variance_ratio": 0.79, "other_motion_psnr": 22.0, "ceiling_psnr": 25.0, "copy_last_psnr": 22.1}
    rows = {line.split(" | ")[0].lstrip("| "): line for line in target_lines(r)[3:]}
    assert rows["reconstruction PSNR (dB)"].endswith("| ≥ 26 | 26.20 | met |")
    assert rows["temporal-variance ratio"].endswith("| 0.790 | missed |")
    assert rows["other-motion PSNR (dB)"].endswith("| 22.00 | met |")  # at most 22 dB
    assert rows["ceiling PSNR over copying the last frame (dB)"].endswith("| 2.90 | missed |")
    # no PSNR target for a setting that has none, nor for other data
    for other in ({"resolution": 48}, {"data": "ucf101"}):
        assert not any("| reconstruction PSNR (dB) |" in line for line in target_lines({**r, **other}))


def test_binomial_blur_keeps_flat_frames_and_smooths_an_impulse():
    import torch

    flat = torch.full((1, 3, 2, 5, 5), 0.3)
    assert torch.allclose(binomial_blur(flat), flat)
    impulse = torch.zeros(1, 1, 1, 5, 5)
    impulse[..., 2, 2] = 1.0
    out = binomial_blur(impulse)
    assert abs(float(out[..., 2, 2]) - 4 / 16) < 1e-6 and abs(float(out[..., 1, 2]) - 2 / 16) < 1e-6
    assert abs(float(out.sum()) - 1.0) < 1e-6


def test_warp_temperature_decodes_sharper_and_is_refused_without_a_warp(first_stage_run, tmp_path, capsys):
    import main
    from tiny_configs import TINY

    assert main.main(["--exp", "first_stage", "--config", "configs/first_stage/warp_shapes32.yaml", "--id", "w",
                      f"results_dir={tmp_path}", *TINY, "train.max_steps=2", "model.vqvae.warp_window=3",
                      "train.sample_every=0"]) == 0
    model = str(tmp_path / "first_stage_w_shapes_42" / "model_last.pth")
    scores = {}
    for name, extra in (("trained", []), ("cold", ["--warp_temperature", "0.1"])):
        out = tmp_path / f"{name}.json"
        assert report(["--first_model", model, "--cond_frames", "2", "--num_clips", "2", "--batch", "2",
                       "--out", str(out), *extra]) == 0
        scores[name] = json.loads(out.read_text())
    assert "warp_temperature" not in scores["trained"] and scores["cold"]["warp_temperature"] == 0.1
    assert scores["cold"]["recon_psnr"] != scores["trained"]["recon_psnr"]
    assert "decoded at warp temperature 0.1" in capsys.readouterr().out
    assert report(["--first_model", str(first_stage_run / "model_last.pth"), "--warp_temperature", "0.5"]) == 2
    assert "merge: warp" in capsys.readouterr().err


def test_first_clip_scores_other_clips_and_is_checked(first_stage_run, tmp_path, capsys):
    """Clips 0-1 and 2-3 are scored apart (--first_clip); their batch means average to the 4-clip
    score, and they differ. A first clip outside the test split is a one-line error."""
    model = str(first_stage_run / "model_last.pth")
    scores = {}
    for first, count in ((0, 4), (0, 2), (2, 2)):
        out = tmp_path / f"from{first}_{count}.json"
        assert report(["--first_model", model, "--cond_frames", "2", "--num_clips", str(count), "--batch", "2",
                       "--first_clip", str(first), "--out", str(out)]) == 0
        scores[first, count] = json.loads(out.read_text())
    assert "(clips 2-3)" in capsys.readouterr().out
    assert scores[2, 2]["first_clip"] == 2 and "first_clip" not in scores[0, 2]
    for key in ("recon_psnr", "ceiling_psnr", "copy_last_psnr"):
        halves = (scores[0, 2][key] + scores[2, 2][key]) / 2
        assert abs(halves - scores[0, 4][key]) < 1e-4, key
    assert scores[0, 2]["copy_last_psnr"] != scores[2, 2]["copy_last_psnr"]
    assert report(["--first_model", model, "--num_clips", "2", "--first_clip", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --first_clip 100000 is outside the test split") and err.count("\n") == 1
