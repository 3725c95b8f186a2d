"""The README picture: a few of validate.py's GIFs (observed | truth | prediction) in one small GIF.

    python scripts/readme_figure.py results/quickstart/validate --out docs/quickstart.gif

Takes the first ``--videos`` GIFs of ``DIR/videos/``, stacks them, enlarges them ``--scale``
times (nearest neighbour: the pixels stay honest) under a header naming the columns, and
refuses to write a file over ``--max_kb`` (the README's budget).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.video_io import read_video, write_video  # noqa: E402

HEADER = 12  # pixels of the header row, before scaling


def header(width: int, labels: list[str]) -> np.ndarray:
    image = Image.new("RGB", (width, HEADER), "white")
    draw = ImageDraw.Draw(image)
    column = width / len(labels)
    for i, label in enumerate(labels):
        draw.text((int(i * column) + 2, 1), label, fill="black")
    return np.asarray(image)


def figure(gifs: list[Path], scale: int, labels: list[str]) -> list[np.ndarray]:
    videos = [read_video(p) for p in gifs]
    length = min(len(v) for v in videos)
    gap = np.full((2, videos[0][0].shape[1], 3), 255, np.uint8)
    frames = []
    for t in range(length):
        rows = [x for v in videos for x in (v[t], gap)][:-1]
        frame = np.concatenate(rows).repeat(scale, axis=0).repeat(scale, axis=1)
        frames.append(np.concatenate([header(frame.shape[1], labels), frame]))
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("validate_dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--labels", default="observed,truth,RSVP-S2")
    parser.add_argument("--max_kb", type=int, default=500)
    args = parser.parse_args(argv)
    gifs = sorted(Path(args.validate_dir, "videos").glob("*.gif"))[:args.videos]
    if not gifs:
        parser.error(f"no GIFs in {args.validate_dir}/videos (run validate.py first)")
    frames = figure(gifs, args.scale, args.labels.split(","))
    out = write_video(args.out, np.stack(frames), fps=4)
    size_kb = out.stat().st_size / 1024
    if size_kb > args.max_kb:
        out.unlink()
        raise SystemExit(f"{out} would be {size_kb:.0f} KB > {args.max_kb} KB: use fewer --videos or a smaller --scale")
    print(f"{out}: {len(gifs)} videos, {len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}, {size_kb:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
