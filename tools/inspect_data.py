"""Look at a dataset before training on it.

    python -m tools.inspect_data --data ucf101 --data_path /data/UCF-101 [--split train|test]
        [--num_clips 16] [--out results/inspect_ucf101_train.gif] [--config PATH] [key=value ...]

Prints how many videos were found, which were skipped and why, the clip shape, dtype and value
range, and the loading throughput (clips/s through the training DataLoader with
data.num_workers workers); writes a grid of clips as a GIF and a still strip as a PNG beside it.
Exit status 2 on a configuration or data-layout problem.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from tools.config import ConfigError, RunConfig, build_config
from tools.datasets import DATASETS, build_dataset
from tools.loader import build_loader
from tools.video_io import frame_strip, video_grid, write_video

GRID_CLIPS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Inspect a dataset: counts, clip format, throughput, a GIF.")
    parser.add_argument("--data", help=f"dataset name: {' | '.join(DATASETS)} (default: from the config)")
    parser.add_argument("--data_path", help="dataset root folder (not needed for shapes)")
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--num_clips", type=int, default=16, help="clips to load and time (default 16)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--out", help="GIF to write (default results/inspect_{data}_{split}.gif); a PNG goes beside it")
    parser.add_argument("--config", help="YAML config whose data section to use")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.frames=8")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    try:
        cfg = build_config(RunConfig(), args.config, args.overrides)
        if args.data is not None:
            cfg.data.name = args.data
        if args.data_path is not None:
            cfg.data.path = args.data_path
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = build_dataset(cfg.data, args.split, seed=cfg.seed)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    data = cfg.data
    print(f"dataset: {data.name} ({args.split} split){f', path {data.path}' if data.path else ''}")
    print(f"videos found: {getattr(dataset, 'num_found', len(dataset))}, usable: {len(dataset)}, "
          f"skipped: {len(getattr(dataset, 'skipped', []))}")
    for warning in caught:  # the skipped videos by name, with reasons
        print(f"warning: {warning.message}")

    num_clips = max(1, args.num_clips)
    batch_size = max(1, min(args.batch_size, num_clips))
    loader = build_loader(dataset, batch_size, train=args.split == "train", seed=cfg.seed,
                          num_workers=data.num_workers)
    clips, batch_times = [], []
    start = time.perf_counter()
    with tqdm(total=num_clips, desc="Loading clips", unit="clip") as bar:
        for batch in loader:
            batch_times.append(time.perf_counter())
            clips.append(batch["video"])
            bar.update(len(batch["video"]))
            if sum(len(c) for c in clips) >= num_clips:
                break
    videos = torch.cat(clips)[:num_clips]
    # Throughput after the first batch (which includes worker start-up), unless there is only one.
    if len(batch_times) > 1:
        loaded = sum(len(c) for c in clips[1:])
        rate, note = loaded / (batch_times[-1] - batch_times[0]), "after the first batch"
    else:
        rate, note = len(videos) / (batch_times[0] - start), "including start-up"
    print(f"clip shape: {list(videos.shape[1:])} (C, T, H, W), dtype: {videos.dtype}, "
          f"range: [{videos.min().item():.3f}, {videos.max().item():.3f}]")
    print(f"throughput: {rate:.1f} clips/s ({note}; num_workers={data.num_workers}, batch_size={batch_size})")

    out = Path(args.out or f"results/inspect_{data.name}_{args.split}.gif")
    grid = videos[:GRID_CLIPS]
    write_video(out, video_grid(grid), fps=8)
    png = write_video(out.with_suffix(".png"), frame_strip(grid[:8])[None])
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
