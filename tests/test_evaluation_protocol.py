"""The protocol: which frames are scored, mean vs best-of-N, curves, FVD clip composition, records."""
import numpy as np
import pytest
import torch

from evaluation.fvd import load_i3d, save_i3d_standin
from evaluation.frame_metrics import psnr_per_frame, quantize_uint8
from evaluation.lpips_metric import build_lpips
from evaluation.protocol import (
    EvalProtocol,
    PredictionEvaluator,
    copy_last_frame_baseline,
    evaluate_predictions,
    parse_metrics,
)
from evaluation.weights import MissingWeightsError

B, C, T, H, W, K = 6, 3, 10, 32, 32, 3
# the small-N FVD note is expected with 6 videos; it is checked in test_protocol_record
pytestmark = pytest.mark.filterwarnings("ignore:FVD/KVD from:UserWarning")


@pytest.fixture(scope="module")
def i3d(tmp_path_factory):
    return load_i3d(save_i3d_standin(tmp_path_factory.mktemp("i3d") / "standin.pt"))


@pytest.fixture(scope="module")
def lpips_standin():
    return build_lpips("alex", force_random=True)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    real = quantize_uint8(torch.rand(B, C, T, H, W, generator=g) * 2 - 1)
    noise = torch.randn(B, 3, C, T, H, W, generator=g)
    levels = torch.tensor([0.05, 0.2, 0.4]).view(1, 3, 1, 1, 1, 1)
    samples = quantize_uint8(real.unsqueeze(1) + levels * noise)
    return real, samples


def test_mean_and_best_of_n_against_direct_computation(data, i3d, lpips_standin):
    real, samples = data
    out = evaluate_predictions(real, samples, cond_frames=K, i3d=i3d, lpips_model=lpips_standin,
                               device="cpu", batch_size=4, keep_per_video=True)
    psnr = psnr_per_frame(samples[:, :, :, K:], real[:, :, K:].unsqueeze(1).expand(-1, 3, -1, -1, -1, -1))
    per_sample = psnr.mean(-1).numpy()                                # [B, N]
    assert out["summary"]["psnr"] == pytest.approx(per_sample.mean(), rel=1e-10)
    assert out["summary"]["psnr_best_of_n"] == pytest.approx(per_sample.max(1).mean(), rel=1e-10)
    # the least noisy sample is the best for every metric here
    assert out["summary"]["psnr_best_of_n"] == pytest.approx(per_sample[:, 0].mean(), rel=1e-10)
    assert out["summary"]["ssim_best_of_n"] > out["summary"]["ssim"]
    assert out["summary"]["lpips_standin_best_of_n"] < out["summary"]["lpips_standin"]   # min for LPIPS
    np.testing.assert_allclose(out["per_video"]["values_per_sample"]["psnr"], per_sample)
    # curves: one value per predicted frame; best-of-N curve follows the chosen sample
    curves = out["curves"]
    assert curves["horizon"] == list(range(1, T - K + 1)) and curves["frame_index"] == list(range(K, T))
    np.testing.assert_allclose(curves["psnr"]["mean"], psnr.mean(dim=(0, 1)).numpy())
    np.testing.assert_allclose(curves["psnr"]["best_of_n"], psnr[:, 0].mean(0).numpy())
    assert len(curves["ssim"]["mean"]) == len(curves["lpips_standin"]["best_of_n"]) == T - K
    assert out["frame_metrics"]["psnr"]["mean"]["n"] == B


def test_standin_outputs_are_labelled_and_never_plain(data, i3d, lpips_standin):
    real, samples = data
    out = evaluate_predictions(real, samples, cond_frames=K, i3d=i3d, lpips_model=lpips_standin, device="cpu")
    for plain in ("fvd", "kvd", "lpips"):
        assert plain not in out["summary"]
        assert plain not in out["distribution_metrics"] and plain not in out["frame_metrics"]
    assert {"fvd_standin", "kvd_standin", "lpips_standin"} <= set(out["summary"])
    proto = out["protocol"]
    assert proto["fvd"]["detector"]["standin"] and proto["fvd"]["detector"]["sha256"] == "stand-in"
    assert proto["frame_metrics"]["lpips"]["standin"] and proto["frame_metrics"]["lpips"]["net"] == "alex"
    assert set(proto["metrics_computed"]) == {"psnr", "ssim", "lpips_standin", "fvd_standin", "kvd_standin"}


def test_protocol_record(data, i3d):
    real, samples = data
    out = evaluate_predictions(real, samples, cond_frames=K, metrics="psnr,fvd", i3d=i3d, device="cpu")
    proto = out["protocol"]
    assert proto["num_videos"] == B and proto["samples_per_video"] == 3
    assert proto["cond_frames"] == K and proto["pred_frames"] == T - K and proto["total_frames"] == T
    assert proto["resolution"] == [H, W] and proto["quantize_uint8"] is True
    assert proto["fvd"]["num_real_clips"] == B and proto["fvd"]["num_fake_clips"] == 3 * B
    assert proto["fvd"]["clip"] == "observed + predicted frames" and proto["fvd"]["clip_frames"] == T
    assert proto["fvd"]["covariance_ddof"] == 1
    assert proto["protocol_options"]["fvd_include_observed"] is True
    assert "torch" in proto["software"]
    fvd = out["distribution_metrics"]["fvd_standin"]
    assert len(fvd["per_sample_index"]["values"]) == 3
    assert any("rank-deficient" in n for n in out["notes"])


def test_fvd_clip_composition(data, i3d):
    real, samples = data
    samples = samples[:, :1]
    garbage = samples.clone()
    garbage[:, :, :, :K] = 1.0   # whatever a model writes into the observed part is ignored
    kw = dict(cond_frames=K, metrics="fvd", i3d=i3d, device="cpu")
    a = evaluate_predictions(real, samples, **kw)["summary"]["fvd_standin"]
    assert evaluate_predictions(real, garbage, **kw)["summary"]["fvd_standin"] == pytest.approx(a, rel=1e-6)
    assert evaluate_predictions(real, samples[:, :, :, K:], **kw)["summary"]["fvd_standin"] == pytest.approx(a, rel=1e-6)
    excl = evaluate_predictions(real, samples, protocol=EvalProtocol(fvd_include_observed=False), **kw)
    assert excl["protocol"]["fvd"]["clip"] == "predicted frames only"
    assert excl["protocol"]["fvd"]["clip_frames"] == T - K
    assert excl["summary"]["fvd_standin"] != pytest.approx(a, rel=1e-3)


def test_full_clips_and_predicted_only_samples_agree(data):
    real, samples = data
    full = evaluate_predictions(real, samples, cond_frames=K, metrics="psnr,ssim", device="cpu")
    pred_only = evaluate_predictions(real, samples[:, :, :, K:], cond_frames=K, metrics="psnr,ssim", device="cpu")
    assert full["summary"] == pred_only["summary"]
    assert "full clips" in full["protocol"]["sample_frames_given"]
    assert pred_only["protocol"]["sample_frames_given"] == "predicted frames only"
    # one sample per video may be given as [B, C, T, H, W]
    single = evaluate_predictions(real, samples[:, 0], cond_frames=K, metrics="psnr", device="cpu")
    assert single["protocol"]["samples_per_video"] == 1
    assert single["summary"]["psnr"] == single["summary"]["psnr_best_of_n"]


def test_quantization_choice(data):
    real, _ = data
    g = torch.Generator().manual_seed(1)
    fake = (real + 0.1 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    q = evaluate_predictions(real, fake, cond_frames=K, metrics="psnr", device="cpu")["summary"]["psnr"]
    q2 = evaluate_predictions(real, quantize_uint8(fake), cond_frames=K, metrics="psnr", device="cpu")["summary"]["psnr"]
    raw = evaluate_predictions(real, fake, cond_frames=K, metrics="psnr", device="cpu",
                               protocol=EvalProtocol(quantize_uint8=False))["summary"]["psnr"]
    assert q == q2 and raw != q


def test_missing_weights_are_skipped_and_recorded(data, tmp_path, monkeypatch):
    real, samples = data
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("RSVP_I3D", str(tmp_path / "nowhere" / "i3d_torchscript.pt"))
    with pytest.warns(UserWarning, match="skipping"):
        out = evaluate_predictions(real, samples, cond_frames=K, device="cpu")
    assert set(out["skipped"]) == {"lpips", "fvd", "kvd"}
    assert "alexnet-owt-7be5be79.pth" in out["skipped"]["lpips"]
    assert "i3d_torchscript.pt" in out["skipped"]["fvd"]
    assert set(out["summary"]) == {"psnr", "psnr_best_of_n", "ssim", "ssim_best_of_n"}
    assert out["protocol"]["metrics_skipped"] == out["skipped"]
    with pytest.raises(MissingWeightsError):
        PredictionEvaluator("lpips", device="cpu", on_missing_weights="raise")


def test_input_validation(data):
    real, samples = data
    ev = PredictionEvaluator("psnr", EvalProtocol(cond_frames=K), device="cpu")
    with pytest.raises(ValueError, match="frames"):
        ev.update(real, samples[:, :, :, 1:])
    with pytest.raises(ValueError, match="frame size"):
        ev.update(real, samples[..., :16])
    ev.update(real[:2], samples[:2])
    with pytest.raises(ValueError, match="differs from earlier batches"):
        ev.update(real[2:4], samples[2:4, :2])
    with pytest.raises(ValueError, match="no predicted frames"):
        PredictionEvaluator("psnr", EvalProtocol(cond_frames=T), device="cpu").update(real, samples)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("psnr,fid")
    assert parse_metrics("kvd, psnr") == ["psnr", "kvd"]
    with pytest.raises(ValueError, match="no videos"):
        PredictionEvaluator("psnr", device="cpu").compute()


def test_copy_last_frame_baseline(data):
    real, _ = data
    pred = copy_last_frame_baseline(real[:, :, :K], T - K)
    assert pred.shape == (B, C, T - K, H, W)
    assert torch.equal(pred[:, :, 4], real[:, :, K - 1])
    out = evaluate_predictions(real, pred, cond_frames=K, metrics="psnr", device="cpu")
    assert np.isfinite(out["summary"]["psnr"])
    with pytest.raises(ValueError):
        copy_last_frame_baseline(real[:, :, :0], 3)
