"""Data-loading benchmark: our seek-based clip loader against a full-decode baseline.

    python scripts/bench_data.py [--quick] [--num_videos 24] [--gop 25] [--dir DIR] [--out FILE.json]

In one process: writes UCF-101-like videos (320x240, 150 frames, 25 fps; half mpeg4 AVI, half
h264 MP4, keyframe every --gop frames; a camera pan over a textured scene with moving objects)
to a temporary folder (or --dir, reused if already there), then loads the same random training
clips (16 frames, stride 1 and 2, 64x64) two ways:

- ``ours``: the ``videofolder`` dataset (``tools.datasets``), which seeks to the keyframe before
  the clip and decodes only up to its last frame;
- ``full decode``: ``tools.video_io.read_video`` of the whole file, then the same frames through
  the same crop/resize (``frames_to_clip``); checked to give identical clips;
- ``full decode, fast rgb``: the same, decoding every frame but converting to RGB the way ours
  does (one shared swscale context), to separate the gain of seeking from that of conversion.

Also times indexing (cold and cached) and ``shapes`` clip generation. Single process,
``torch.set_num_threads(1)``; PyAV's own decoder threads are left as each path sets them, so CPU
time per clip is reported beside wall-clock clips/s. Prints a table and the speed-up; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import video_io  # noqa: E402
from tools.config import DataConfig  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.datasets.clips import frames_to_clip  # noqa: E402
from tools.seeding import sample_rng  # noqa: E402


def synthetic_video(rng: np.random.Generator, num_frames: int, height: int = 240, width: int = 320) -> np.ndarray:
    """uint8 [T, H, W, 3]: a slow pan over a smooth random scene with a few moving discs."""
    pan = rng.integers(-2, 3, size=2)
    margin = int(np.abs(pan).max() * num_frames) + 1
    low = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2 + margin // 16, 3), dtype=np.uint8)
    scene = np.asarray(Image.fromarray(low).resize((width + margin, height + margin), Image.BICUBIC))
    detail = rng.integers(-12, 13, size=scene.shape, dtype=np.int16)
    scene = np.clip(scene.astype(np.int16) + detail, 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-3, 3),
              rng.uniform(10, 30), rng.integers(0, 256, size=3)) for _ in range(3)]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        oy = margin // 2 + pan[0] * (t - num_frames // 2)
        ox = margin // 2 + pan[1] * (t - num_frames // 2)
        frame = scene[oy:oy + height, ox:ox + width].copy()
        for cx, cy, vx, vy, r, color in discs:
            inside = (x - (cx + vx * t) % width) ** 2 + (y - (cy + vy * t) % height) ** 2 < r * r
            frame[inside] = color
        frames[t] = frame
    return frames


def make_videos(folder: Path, count: int, num_frames: int, gop: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / (f"v_{i:03d}.avi" if i % 2 == 0 else f"v_{i:03d}.mp4")
        if not path.exists():
            frames = synthetic_video(np.random.default_rng(i), num_frames)
            bit_rate = 600_000 if path.suffix == ".avi" else None  # UCF-101's XviD files: ~0.5 Mbit/s
            video_io.encode_video(path, frames, fps=25, gop_size=gop, bit_rate=bit_rate)
        paths.append(path)
    return paths


def timed(fn, keys) -> tuple[float, float, list]:
    """(wall seconds, cpu seconds, outputs of the first 3 keys)."""
    wall, cpu = time.perf_counter(), time.process_time()
    first = []
    for n, key in enumerate(keys):
        out = fn(key)
        if n < 3:
            first.append(out)
    return time.perf_counter() - wall, time.process_time() - cpu, first


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 videos, 40 clips per measurement")
    parser.add_argument("--num_videos", type=int, default=24)
    parser.add_argument("--video_frames", type=int, default=150)
    parser.add_argument("--gop", type=int, default=25, help="keyframe interval of the generated videos")
    parser.add_argument("--clips", type=int, default=200, help="clips per measurement")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--strides", default="1,2")
    parser.add_argument("--dir", help="where to write the videos (default: a temporary folder)")
    parser.add_argument("--out", default="results/bench_data.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_videos, args.clips = min(args.num_videos, 6), min(args.clips, 40)
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    folder = Path(args.dir) if args.dir else Path(tmp.name) / "videos"

    start = time.perf_counter()
    paths = make_videos(folder, args.num_videos, args.video_frames, args.gop)
    print(f"videos: {len(paths)} x {args.video_frames} frames 320x240 25 fps, gop {args.gop} "
          f"(mpeg4 .avi + h264 .mp4) in {folder} ({time.perf_counter() - start:.1f}s to prepare)")

    results: dict = {"config": {k: v for k, v in vars(args).items() if k != "dir"},
                     "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                 "python": platform.python_version(), "torch": torch.__version__,
                                 "av": video_io.av.__version__, "torch_threads": torch.get_num_threads()},
                     "rows": []}
    rows = results["rows"]
    cache = Path(tmp.name) / "cache"
    cfg = DataConfig(name="videofolder", path=str(folder), frames=args.frames, resolution=args.resolution,
                     test_fraction=0.0, cache_dir=str(cache))
    t0 = time.perf_counter()
    build_dataset(cfg, "train")
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_dataset(cfg, "train")
    warm = time.perf_counter() - t0
    results["index_seconds"] = {"cold": cold, "cached": warm, "videos": len(paths)}
    print(f"indexing {len(paths)} videos: {cold * 1000:.0f} ms cold, {warm * 1000:.0f} ms cached")

    for stride in [int(s) for s in args.strides.split(",")]:
        cfg.frame_stride = stride
        ds = build_dataset(cfg, "train", seed=0)
        keys = [(i % len(ds), i) for i in range(args.clips)]
        span = (args.frames - 1) * stride + 1

        def baseline(key, fast_rgb=False):
            index, draw = key
            entry = ds.entries[index]
            start = int(sample_rng(0, draw).integers(0, entry.num_frames - span + 1))
            if fast_rgb:  # every frame decoded, converted with one shared swscale context
                frames = video_io.read_video_frames(entry.path, range(entry.num_frames))
            else:
                frames = video_io.read_video(entry.path)
            return frames_to_clip(frames[start:start + span:stride], args.resolution)

        decoded = video_io.DECODE_STATS["frames_decoded"]
        wall, cpu, ours_first = timed(lambda k: ds[k]["video"], keys)
        per_clip = (video_io.DECODE_STATS["frames_decoded"] - decoded) / len(keys)
        rows.append({"loader": "ours (seek)", "stride": stride, "clips_per_s": len(keys) / wall,
                     "cpu_ms_per_clip": 1000 * cpu / len(keys), "frames_decoded_per_clip": per_clip})
        wall, cpu, base_first = timed(baseline, keys)
        rows.append({"loader": "full decode", "stride": stride, "clips_per_s": len(keys) / wall,
                     "cpu_ms_per_clip": 1000 * cpu / len(keys), "frames_decoded_per_clip": args.video_frames})
        same = all(torch.equal(a, b) for a, b in zip(ours_first, base_first))
        rows[-2]["identical_to_baseline"] = same
        wall, cpu, _ = timed(lambda k: baseline(k, fast_rgb=True), keys)
        rows.append({"loader": "full decode, fast rgb", "stride": stride, "clips_per_s": len(keys) / wall,
                     "cpu_ms_per_clip": 1000 * cpu / len(keys), "frames_decoded_per_clip": args.video_frames})
        if not same:
            print(f"WARNING: stride {stride}: clips differ from the full-decode baseline")

    shapes_cfg = DataConfig(frames=args.frames, resolution=args.resolution)
    shapes = build_dataset(shapes_cfg, "train")
    wall, cpu, _ = timed(lambda k: shapes[k]["video"], range(args.clips * 2))
    rows.append({"loader": "shapes (generated)", "stride": 1, "clips_per_s": 2 * args.clips / wall,
                 "cpu_ms_per_clip": 1000 * cpu / (2 * args.clips), "frames_decoded_per_clip": 0})

    print(f"\n{args.clips} clips of {args.frames}x{args.resolution}x{args.resolution} per row, one process:")
    print(f"{'loader':<22} {'stride':>6} {'clips/s':>9} {'cpu ms/clip':>12} {'frames decoded/clip':>20}")
    for r in rows:
        print(f"{r['loader']:<22} {r['stride']:>6} {r['clips_per_s']:>9.1f} {r['cpu_ms_per_clip']:>12.1f} "
              f"{r['frames_decoded_per_clip']:>20.1f}")
    ratios = {}
    for stride in {r["stride"] for r in rows if r["loader"] == "full decode"}:
        ours = next(r for r in rows if r["loader"] == "ours (seek)" and r["stride"] == stride)
        base = next(r for r in rows if r["loader"] == "full decode" and r["stride"] == stride)
        ratios[f"stride{stride}"] = {"wall": ours["clips_per_s"] / base["clips_per_s"],
                                     "cpu": base["cpu_ms_per_clip"] / ours["cpu_ms_per_clip"]}
        print(f"stride {stride}: ours / full decode = {ratios[f'stride{stride}']['wall']:.2f}x clips/s, "
              f"{ratios[f'stride{stride}']['cpu']:.2f}x less CPU per clip")
    results["speedup"] = ratios
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
