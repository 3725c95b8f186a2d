"""model.vqvae.chunk_frames: the first stage encodes and decodes in frame chunks at inference,
with the same codes, frames equal to float tolerance, and less peak memory."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from models.moso import MosoConfig, MosoVQVAE, chunks_of, per_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from measure_memory import LiveTensorMemory  # noqa: E402

SMALL = dict(hidden=16, res_depth=1, attn_heads=2, codebook_size=64, code_dim=4)
VARIANTS = {"gate": {}, "warp_pixels": dict(merge="warp", anchor="before", pixel_warp=True),
            "matching_mean": dict(merge="warp", motion_input="matching", temporal_fusion="mean")}


def model(chunk: int, variant: str = "gate", resolution: int = 32) -> MosoVQVAE:
    torch.manual_seed(0)
    return MosoVQVAE(MosoConfig(**SMALL, **VARIANTS[variant], chunk_frames=chunk), frames=8,
                     resolution=resolution).eval()


def clip(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, 8, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def run(net: MosoVQVAE, video: torch.Tensor) -> tuple[dict, torch.Tensor]:
    anchor = video[:, :, 0] if net.cfg.anchor == "before" else None
    with torch.no_grad():
        encoded = net.encode(video, anchor=anchor)
        return encoded, net.decode(encoded["codes"], anchor=anchor)


def test_chunks_cover_the_frames_once_and_not_under_autograd():
    with torch.no_grad():
        assert chunks_of(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
        assert chunks_of(7, 0) == chunks_of(7, 7) == chunks_of(7, 9) == [slice(0, 7)]
    assert chunks_of(7, 3) == [slice(0, 7)]  # grad enabled: chunks would all be kept for backward
    with pytest.raises(ValueError, match="chunk_frames"):
        MosoConfig(chunk_frames=-1)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("chunk", [1, 3, 5])
@pytest.mark.parametrize("batch", [1, 2])
def test_chunked_codes_are_bit_identical_and_frames_close(variant, chunk, batch):
    video = clip(batch)
    whole, frames = run(model(0, variant), video)
    chunked, chunked_frames = run(model(chunk, variant), video)
    for k in whole["indices"]:
        assert torch.equal(whole["indices"][k], chunked["indices"][k])
        assert torch.equal(whole["codes"][k], chunked["codes"][k])
    torch.testing.assert_close(chunked_frames, frames, rtol=1e-5, atol=1e-5)


def test_training_forward_is_not_chunked():
    video = clip()
    outs = []
    for chunk in (0, 2):
        net = model(chunk, "warp_pixels").train()
        outs.append(net(video, step=0, anchor=video[:, :, 0])["recon"])
    assert torch.equal(outs[0], outs[1])


def peak_bytes(net: MosoVQVAE, video: torch.Tensor) -> int:
    tracker = LiveTensorMemory()
    with tracker:
        tracker.add(*net.parameters(), *net.buffers(), video)
        run(net, video)
    return tracker.peak


def test_chunks_cut_the_peak_memory_of_encode_and_decode_by_a_third():
    video = clip(1, size=64)
    whole, chunked = peak_bytes(model(0, resolution=64), video), peak_bytes(model(2, resolution=64), video)
    assert chunked <= whole * 2 / 3, (chunked, whole)


def test_set_chunk_frames_changes_a_built_model():
    net = model(0)
    net.set_chunk_frames(3)
    assert net.cfg.chunk_frames == 3 and {net.encoders[k].chunk for k in net.encoders} | {net.decoder.chunk} == {3}
    with pytest.raises(ValueError, match="chunk_frames"):
        net.set_chunk_frames(-2)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_pseudo_clip_encodes_its_repeated_frames_once_with_the_same_codes(variant):
    from models.interface import pseudo_clip
    video = pseudo_clip(clip()[:, :, :3], 8)  # 3 observed frames, the last one repeated 5 times
    rows = {}

    def count(name):
        return lambda module, args: rows.setdefault(name, []).append(args[0].shape[0])

    codes = {}
    for reuse in (False, True):
        net = model(2, variant)
        net.set_reuse_repeats(reuse)
        rows.clear()
        for name, encoder in net.encoders.items():
            encoder.frame_stack.register_forward_pre_hook(count(name))
        codes[reuse], _ = run(net, video)
        seen = {name: sum(n) for name, n in rows.items()}
        motion_rows = 2 * 8 if not reuse else 2 * 3  # d_2 = ... = d_7 = x_2 - anchor: 3 distinct per clip
        assert seen["motion"] == motion_rows, (reuse, seen)
    for k in codes[False]["indices"]:
        assert torch.equal(codes[False]["indices"][k], codes[True]["indices"][k])
        assert torch.equal(codes[False]["codes"][k], codes[True]["codes"][k])


def test_rows_are_reused_only_outside_autograd_and_only_when_equal():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return x * 2

    frames = torch.tensor([[1.0], [1.0], [2.0], [2.0], [1.0]])
    with torch.no_grad():
        out = per_frame(fn, frames, 0, reuse_repeats=True)
    assert torch.equal(out, frames * 2) and calls == [3]  # rows 0, 2 and 4 differ from their predecessor
    calls.clear()
    out = per_frame(fn, frames.requires_grad_(), 0, reuse_repeats=True)
    assert calls == [5]
