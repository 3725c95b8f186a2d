"""Shared test helpers: tiny synthetic videos on disk.

The ``videos`` fixture gives functions that write small videos whose frames all differ (a moving
bar, a per-frame brightness and a frame-number pattern), so a wrong frame index shows up as a
pixel difference.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tools.video_io import encode_video, write_video


def synthetic_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: a static gradient with a moving bar; every frame is different."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, int(rng.integers(0, 255)))], axis=-1).astype(np.int32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = base.copy()
        left = (3 * t) % max(width - 8, 1)
        frame[:, left:left + 8] = (255, 255 - (7 * t) % 256, (40 * t) % 256)
        frame[: height // 4, : width // 4] = (13 * t) % 256  # per-frame brightness patch
        frames[t] = np.clip(frame, 0, 255)
    return frames


def write_test_video(path: str | Path, num_frames: int = 24, height: int = 48, width: int = 64,
                     gop_size: int | None = 5, fps: float = 25.0, seed: int = 0) -> Path:
    """A small video file; the codec follows the suffix (.avi mpeg4, .mp4/.mkv/.mov h264, .gif)."""
    path = Path(path)
    frames = synthetic_frames(num_frames, height, width, seed)
    if path.suffix.lower() == ".gif":
        return write_video(path, frames, fps=fps)
    codec = "libvpx-vp9" if path.suffix.lower() == ".webm" else None
    return encode_video(path, frames, fps=fps, codec=codec, gop_size=gop_size)


def write_frame_folder(folder: str | Path, num_frames: int = 24, height: int = 48, width: int = 64,
                       suffix: str = ".png", seed: int = 0) -> Path:
    """A folder of numbered images ``frame_1.png, frame_2.png, ... frame_10.png`` (natural order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(synthetic_frames(num_frames, height, width, seed), start=1):
        Image.fromarray(frame).save(folder / f"frame_{t}{suffix}")
    return folder


def write_corrupt_video(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00\x00\x00AVI this is not a video" * 10)
    return path


@pytest.fixture
def videos() -> SimpleNamespace:
    """Writers of tiny test videos: ``videos.file(path, ...)``, ``videos.frames(folder, ...)``,
    ``videos.corrupt(path)``, ``videos.synthetic(T, H, W)`` (the raw frames)."""
    return SimpleNamespace(file=write_test_video, frames=write_frame_folder, corrupt=write_corrupt_video,
                           synthetic=synthetic_frames)


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to fetch weights (or open any connection)."""
    import socket
    import urllib.request

    import torch.hub
    import torch.utils.model_zoo
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.utils.model_zoo, "load_url", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME: no torchvision trunk files (LPIPS weights absent)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture(scope="session")
def first_stage_run(tmp_path_factory):
    """A tiny first-stage run (4 steps), shared by the first- and second-stage tests."""
    import main
    from tiny_configs import TINY

    results = tmp_path_factory.mktemp("results")
    assert main.main(["--exp", "first_stage", "--id", "tiny", f"results_dir={results}", "train.max_steps=4", *TINY]) == 0
    return results / "first_stage_tiny_shapes_42"
