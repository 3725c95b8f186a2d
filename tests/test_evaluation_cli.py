"""``python -m evaluation.evaluate`` end to end on small generated folders.

FVD/KVD run through a random TorchScript stand-in of the I3D (reported as ``fvd_standin``);
LPIPS weights are absent on purpose (empty TORCH_HOME), so the skip path is exercised.
"""
import json

import numpy as np
import pytest

from evaluation.evaluate import main
from evaluation.fvd import save_i3d_standin
from tools.video_io import write_video

T, H, W, K = 12, 32, 32, 2


def _video(rng, t=T, h=H, w=W):
    base = rng.integers(0, 256, size=(1, h, w, 3))
    drift = np.arange(t)[:, None, None, None] * 3
    return np.clip(base + drift, 0, 255).astype(np.uint8)


def _noisy(rng, video, amount=12):
    return np.clip(video.astype(int) + rng.integers(-amount, amount + 1, video.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))   # no LPIPS backbone here
    monkeypatch.delenv("RSVP_I3D", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def folders(env):
    rng = np.random.default_rng(0)
    real, fake = env / "real", env / "fake"
    kinds = [".npy", ".gif", ".mp4", "frames", ".npy", ".npy"]
    for i, kind in enumerate(kinds):
        video = _video(rng)
        name = f"clip{i}"
        if kind == "frames":
            for f, frame in enumerate(video):
                write_video(real / name / f"{f:03d}.png", frame[None])
        else:
            write_video(real / f"{name}{kind}", video)
        write_video(fake / f"{name}.npy", _noisy(rng, video))
    (real / "README.txt").write_text("not a video")
    i3d = save_i3d_standin(env / "standin" / "i3d_torchscript.pt")
    return real, fake, i3d


def test_cli_end_to_end(folders, env, capsys):
    real, fake, i3d = folders
    out = env / "out" / "metrics.json"
    rc = main(["--real", str(real), "--fake", str(fake), "--i3d", str(i3d), "--cond_frames", str(K),
               "--out", str(out), "--batch_size", "4", "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "psnr" in printed.out and "fvd_standin" in printed.out and "STAND-IN" in printed.out
    assert "alexnet-owt-7be5be79.pth" in printed.err           # the LPIPS skip names the file
    result = json.loads(out.read_text())
    assert set(result["summary"]) >= {"psnr", "ssim", "fvd_standin", "kvd_standin"}
    assert "fvd" not in result["summary"] and "kvd" not in result["summary"]
    assert "lpips" in result["skipped"] and "TORCH_HOME" in result["skipped"]["lpips"]
    assert result["protocol"]["num_videos"] == 6 and result["protocol"]["cond_frames"] == K
    assert result["protocol"]["fvd"]["clip_frames"] == T
    assert result["protocol"]["fvd"]["detector"]["standin"] is True
    assert len(result["curves"]["psnr"]["mean"]) == T - K
    assert (env / "out" / "metrics_curves.png").is_file()
    assert any("README.txt" in n for n in result["notes"])
    assert 20 < result["summary"]["psnr"] < 60


def test_cli_sample_folders_predicted_only_and_env_detector(folders, env, monkeypatch):
    real, _, i3d = folders
    rng = np.random.default_rng(1)
    fake = env / "fake_n"
    for path in sorted(real.iterdir()):
        if path.suffix == ".txt":
            continue
        name = path.stem if path.is_file() else path.name
        from tools.video_io import read_video

        video = read_video(path)
        for s in range(3):
            write_video(fake / name / f"s{s}.npy", _noisy(rng, video[K:], amount=5 + 20 * s))
    monkeypatch.setenv("RSVP_I3D", str(i3d))
    out = env / "n.json"
    rc = main(["--real", str(real), "--fake", str(fake), "--cond_frames", str(K), "--metrics", "psnr,ssim,fvd",
               "--fvd_observed", "exclude", "--out", str(out), "--curves", str(env / "c.png"), "--device", "cpu",
               "--per_video"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["samples_per_video"] == 3
    assert result["protocol"]["sample_frames_given"] == "predicted frames only"
    assert result["protocol"]["fvd"]["clip"] == "predicted frames only"
    assert result["summary"]["psnr_best_of_n"] > result["summary"]["psnr"]
    assert result["distribution_metrics"]["fvd_standin"]["num_fake_clips"] == 18
    assert result["per_video"]["names"][0] == "clip0"
    assert "lpips" not in result["skipped"]                   # not requested, so not skipped
    assert (env / "c.png").is_file()


def test_cli_errors(folders, env, capsys):
    real, fake, i3d = folders
    base = ["--real", str(real), "--fake", str(fake), "--metrics", "psnr", "--out", str(env / "e.json"),
            "--device", "cpu"]
    # names that do not match
    (fake / "clip0.npy").rename(fake / "extra.npy")
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "only in --real" in err and "clip0" in err and "extra" in err
    (fake / "extra.npy").rename(fake / "clip0.npy")
    # frame counts
    good = np.load(fake / "clip1.npy")
    np.save(fake / "clip1.npy", good[:-1])
    assert main(base) == 2
    assert "frames" in capsys.readouterr().err
    # frame sizes
    np.save(fake / "clip1.npy", good[:, :16])
    assert main(base) == 2
    assert "16x32" in capsys.readouterr().err
    np.save(fake / "clip1.npy", good)
    # unknown metric, missing folder
    assert main(base[:4] + ["--metrics", "psnr,fid"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["--real", str(env / "nope"), "--fake", str(fake)]) == 2
    # only FVD requested but no detector anywhere: nothing left to compute
    assert main(base[:4] + ["--metrics", "fvd", "--out", str(env / "e.json")]) == 2
    assert "i3d_torchscript.pt" in capsys.readouterr().err
    # and with everything fixed it runs
    assert main(base) == 0
