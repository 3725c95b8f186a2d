"""How many numbers per patch a latent needs: the PSNR of the best *linear* code of p x p patches.

    python scripts/patch_pca_bound.py [--patch 4 2] [--dims 4 8 16] [--num_train 256] [--num_test 64] [--doc docs/PVDM.md]

Every frame is cut into p x p x 3 patches; the k principal components of the training patches
(one basis shared by all frames, fitted on ``--num_train`` training clips) code each test patch in
k numbers. Each frame keeps its own code, so this is an upper-bound-like reference for a latent of
k channels per p x p cell that is also free to change every frame, not a bound on nonlinear codes.
Used in docs/PVDM.md to size PVDM's latent channels on ``shapes``; ``--doc`` writes the table into
that document's ``pca`` block.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.frame_metrics import psnr_per_frame  # noqa: E402
from scripts.doc_block import replace_block  # noqa: E402
from tools.config import DataConfig, ShapesConfig  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402


def patches(video: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, 3, T, H, W]`` -> ``[B*T*(H/p)*(W/p), p*p*3]``."""
    return rearrange(video, "b c t (h p1) (w p2) -> (b t h w) (p1 p2 c)", p1=p, p2=p)


def linear_code_psnr(train: torch.Tensor, test: torch.Tensor, p: int, k: int) -> float:
    """Mean PSNR of ``test`` clips coded by the top-``k`` principal components of ``train``'s patches."""
    x = patches(train, p).double()
    mean = x.mean(0)
    basis = torch.linalg.svd(x - mean, full_matrices=False).Vh[:k].T  # [p*p*3, k]
    y = patches(test, p).double() - mean
    coded = (y @ basis) @ basis.T + mean
    b, _, t, h, w = test.shape
    recon = rearrange(coded.float(), "(b t h w) (p1 p2 c) -> b c t (h p1) (w p2)", b=b, t=t, h=h // p, w=w // p,
                      p1=p, p2=p)
    return float(psnr_per_frame(recon.clamp(-1, 1), test).mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--num_train", type=int, default=256)
    parser.add_argument("--num_test", type=int, default=64)
    parser.add_argument("--doc", help="write the table into this document's pca block")
    args = parser.parse_args(argv)
    data = DataConfig(name="shapes", resolution=args.resolution, frames=args.frames, num_workers=0,
                      shapes=ShapesConfig(num_train=args.num_train, num_test=max(args.num_test, 1)))
    train_set, test_set = build_dataset(data, "train", 0), build_dataset(data, "test", 0)
    train = torch.stack([train_set[i]["video"] for i in range(args.num_train)])
    test = torch.stack([test_set[i]["video"] for i in range(min(args.num_test, len(test_set)))])
    lines = [f"shapes {args.resolution}x{args.resolution}, {args.frames} frames, {len(train)} training clips, "
             f"{len(test)} test clips (`python scripts/patch_pca_bound.py`):", "",
             "| patch | numbers per patch | numbers per frame | PSNR (dB) |", "|---|---|---|---|"]
    for p in args.patch:
        for k in args.dims:
            if k <= p * p * 3:
                per_frame = k * (args.resolution // p) ** 2
                lines.append(f"| {p}x{p} | {k} | {per_frame} | {linear_code_psnr(train, test, p, k):.2f} |")
    print("\n".join(lines))
    if args.doc:
        replace_block(Path(args.doc), "pca", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
