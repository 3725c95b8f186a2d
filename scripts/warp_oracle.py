"""How well can moving the anchor frame reproduce a clip? The best whole-pixel offset per cell.

    python scripts/warp_oracle.py [--config configs/first_stage/warp_shapes32.yaml] [--num_clips 32]
        [--settings 2:2,2:1,4:2,4:1,1:1] [--doc docs/FIRST_STAGE.md --block warp-oracle]

For each cell size (the warp's spatial resolution) and offset step (1: every whole pixel; 2: the
even offsets, as a warp made at half resolution moves), every frame of each test clip is built
from the anchor frame (the frame before the clip) moved by the one offset that matches that cell
best, and scored in PSNR against the frame and in temporal-variance ratio (how sharp a warp of
whole-pixel copies stays over time). No model is involved: it is the ceiling of a warp
of that resolution, which tells how fine the motion tokens (cells) must be to reach a target.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from evaluation.frame_metrics import psnr_per_frame  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.decomposition import temporal_variance_ratio  # noqa: E402
from tools.experiments.first_stage import first_stage_data, split_anchor  # noqa: E402
from tools.registry import experiment_config  # noqa: E402
from scripts.doc_block import check_block_or_exit, publish  # noqa: E402

DEFAULT_SETTINGS = "2:2,2:1,4:2,4:1,1:1"  # CELL:STEP pairs (cell pixels, offset step in pixels)


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"8:4,4:1"`` -> ``[(8, 4), (4, 1)]``; raises ``ValueError`` with the offending item."""
    settings = []
    for item in text.split(","):
        cell, sep, step = item.strip().partition(":")
        if not (sep and cell.isdigit() and step.isdigit() and int(cell) > 0 and int(step) > 0):
            raise ValueError(f"expected CELL:STEP with positive whole numbers, got {item.strip()!r}")
        settings.append((int(cell), int(step)))
    return settings


def best_offset_frames(video: torch.Tensor, anchor: torch.Tensor, reach: int, step: int, cell: int) -> torch.Tensor:
    """``[B, C, T, H, W]``: per ``cell``x``cell`` block of each frame, the anchor moved by the offset
    (multiples of ``step`` up to ``reach`` pixels each way) with the least mean absolute error."""
    b, _, t, h, w = video.shape
    padded = F.pad(anchor, (reach,) * 4, mode="replicate")
    best = torch.full((b, t, h // cell, w // cell), float("inf"))
    out = torch.zeros_like(video)
    offsets = range(-(reach // step) * step, reach + 1, step)
    for dy in offsets:
        for dx in offsets:
            moved = padded[:, :, reach + dy:reach + dy + h, reach + dx:reach + dx + w][:, :, None].expand_as(video)
            err = F.avg_pool2d((moved - video).abs().mean(dim=1).flatten(0, 1), cell).unflatten(0, (b, t))
            better = err < best
            best = torch.where(better, err, best)
            mask = better.repeat_interleave(cell, -1).repeat_interleave(cell, -2)[:, None]
            out = torch.where(mask, moved, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/first_stage/warp_shapes32.yaml")
    parser.add_argument("--num_clips", type=int, default=32)
    parser.add_argument("--reach", type=int, default=12, help="largest displacement tried, in pixels (default 12)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS,
                        help="comma-separated CELL:STEP pairs to score (default: %(default)s)")
    parser.add_argument("--doc", help="also write the table into this Markdown file's block")
    parser.add_argument("--block", default="warp-oracle", help="the block's name (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(args.settings)
    except ValueError as err:
        parser.error(str(err))
    check_block_or_exit(parser, args.doc, args.block)
    cfg = experiment_config("first_stage", args.config, [])
    if cfg.model.vqvae.anchor != "before":
        parser.error("the oracle moves the frame before the clip: use a config with model.vqvae.anchor: before")
    size = cfg.data.resolution
    if any(size % cell for cell, _ in settings):
        parser.error(f"every cell size must divide the frame size {size}: got {args.settings}")
    data = build_dataset(first_stage_data(cfg), "test")
    anchor, batch = split_anchor(cfg, default_collate([data[i] for i in range(min(args.num_clips, len(data)))]))
    video = batch["video"]
    command = (f"python scripts/warp_oracle.py --config {args.config} --num_clips {args.num_clips} "
               f"--reach {args.reach} --settings {args.settings}")
    lines = [f"`{command}`: {video.shape[0]} test clips, {video.shape[2]} frames at {size}x{size}, "
             f"offsets up to {args.reach} pixels", "",
             "| cell (pixels) | offset step (pixels) | PSNR (dB) | temporal-variance ratio |", "|---|---|---|---|"]

    def scores(frames: torch.Tensor) -> str:
        return f"{float(psnr_per_frame(frames, video).mean()):.2f} | {float(temporal_variance_ratio(frames, video)):.3f}"

    for cell, step in settings:
        lines.append(f"| {cell}x{cell} | {step} | {scores(best_offset_frames(video, anchor, args.reach, step, cell))} |")
    lines.append(f"| (no move: the anchor frame) | – | {scores(anchor[:, :, None].expand_as(video))} |")
    publish("\n".join(lines), args.doc, args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
