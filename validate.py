"""Sample predicted frames from a trained predictor and score them against the ground truth.

    python validate.py --ckpt results/ddpm_main_shapes_42/model_last.pth --data shapes --out results/validate_shapes

For every test video: the first ``--cond_frames`` frames are observed, ``--pred_frames`` are
predicted (``--num_samples`` times). Longer predictions than one clip roll out clip by clip,
each conditioned on the last observed-or-predicted frames (PVDM's Algorithm 1 with our
conditioning). Any method's checkpoint works: the experiment that wrote it loads its
predictor (models/interface.py, tools/pretrained.py). Written to ``--out``:

* ``videos/{name}.gif`` — observed (last frame held) | ground truth | prediction (sample 0)
* ``videos/{name}_s{j}.npy`` (uint8 ``[P, H, W, C]``) and ``videos/{name}_s{j}.mp4`` — predicted frames
* ``grid.png`` — the first 16 videos: ground-truth frames above predicted frames
* ``curves.png`` — PSNR/SSIM/LPIPS per predicted frame for the model, the copy-last-frame
  baseline and the first-stage ceiling
* ``metrics.json`` — PSNR/SSIM/LPIPS (mean over samples and best-of-N), FVD/KVD when the I3D
  weights are present, the same for the copy-last-frame baseline and for the first stage's
  ceiling (the true future through the method's first stage, given the observed frames; RSVP:
  the observed scene/object decoded with the true future motion), and every choice made.

The same ``--seed`` (and ``--batch_size``) gives the same output on CPU, with any number of
processes: ``torchrun --nproc_per_node N validate.py ...`` splits the batches over N processes
(batch ``i`` to rank ``i mod N``), each writes its videos, and rank 0 gathers the per-video
metrics and I3D features and writes the one ``grid.png`` and ``metrics.json``
(docs/DISTRIBUTED.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from evaluation.plots import plot_curves
from evaluation.protocol import EvalProtocol, PredictionEvaluator, copy_last_frame_baseline
from models.interface import first_stage_ceiling, pseudo_clip, rollout
from tools.config import ConfigError, check_device
from tools.datasets import build_dataset
from tools.distributed import DistInfo, broadcast_object, gather_objects, process_group
from tools.loader import init_worker
from tools.pretrained import INFERENCE_PRECISIONS, inference_autocast, load_predictor
from tools.video_io import frame_strip, to_uint8, write_video


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Sample predicted frames from a second-stage checkpoint; write "
                                            "GIF/NPY/MP4/PNG and metrics.json (with the copy-last-frame baseline "
                                            "and the first-stage ceiling).")
    p.add_argument("--ckpt", required=True, help="a predictor's checkpoint (results/ddpm_.../model_last.pth)")
    p.add_argument("--out", required=True, help="output folder for videos/, grid.png and metrics.json")
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data_path", help="dataset root (default: the training one)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="split to predict (default: %(default)s)")
    p.add_argument("--num_videos", type=int, default=64,
                   help="first N videos of the split; capped at its size (default: %(default)s)")
    p.add_argument("--num_samples", type=int, default=1,
                   help="samples per video; best-of-N and mean are reported (default: %(default)s)")
    p.add_argument("--cond_frames", type=int, help="observed frames (default: the model's)")
    p.add_argument("--pred_frames", type=int, help="predicted frames (default: one clip; longer rolls out)")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm"], help="default: the model config's")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model config's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance weight (default: the config's)")
    p.add_argument("--snap", choices=["on", "off"], help="snap sampled motion to the codebook (default: config)")
    p.add_argument("--temperature", type=float,
                   help="token sampling temperature, 0: greedy (methods that sample tokens: the tubelet transformer; "
                        "default: the checkpoint's)")
    p.add_argument("--top_k", type=int, help="sample among the k most likely tokens, 0: all (token methods)")
    p.add_argument("--top_p", type=float, help="nucleus sampling mass in (0, 1], 1: all (token methods)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same output (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=8, help="videos per batch (default: %(default)s)")
    p.add_argument("--metrics", default="psnr,ssim,lpips,fvd,kvd",
                   help="comma-separated; st_lpips (ST-LPIPS, offline, not comparable with LPIPS) on request "
                        "(default: %(default)s)")
    p.add_argument("--i3d", help="i3d_torchscript.pt for FVD/KVD (default: $RSVP_I3D or ~/.cache/rsvp/)")
    p.add_argument("--raw_weights", action="store_true", help="sample with the raw weights instead of the EMA")
    p.add_argument("--precision", default="fp32", choices=list(INFERENCE_PRECISIONS),
                   help="fp32, or bf16 autocast: much faster on GPUs and on CPUs with AMX, predictions shifted by "
                        "bf16 rounding (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: a GPU if there is one (default: %(default)s)")
    p.add_argument("--num_workers", type=int, default=0, help="data loader workers (default: %(default)s)")
    return p


def sample_options(args: argparse.Namespace) -> dict:
    """The sampling flags that were given (the others keep the predictor's own settings)."""
    options = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
               "snap": None if args.snap is None else args.snap == "on",
               **{k: getattr(args, k) for k in TOKEN_OPTIONS}}
    return {k: v for k, v in options.items() if v is not None}


TOKEN_OPTIONS = ("temperature", "top_k", "top_p")  # flags of predictors that sample tokens (``samples_tokens``)


def check_sample_options(predictor: Any, options: dict, ckpt: str) -> None:
    """A clear error, before anything is written, for token flags given to a diffusion model or
    sampling values the predictor refuses."""
    token_flags = [f"--{k}" for k in TOKEN_OPTIONS if k in options]
    if token_flags and not getattr(predictor, "samples_tokens", False):
        raise ConfigError(f"{', '.join(token_flags)} apply to methods that sample tokens (the tubelet transformer); "
                          f"{ckpt} samples with diffusion")
    try:
        predictor.settings(**options)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def sample_generator(seed: int, batch_index: int, sample: int) -> torch.Generator:
    """The generator of one sample of one batch: the output depends neither on other batches nor
    on which process samples this one."""
    state = np.random.SeedSequence([seed, batch_index, sample]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) % 2**63)


GRID_VIDEOS = 16  # grid.png shows the first videos only


def shard_batches(count: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[tuple[int, list[int]]]:
    """The batches of one pass over videos ``0 .. count-1`` that rank ``rank`` of ``world_size`` evaluates.

    Batch ``i`` always holds videos ``i * batch_size ..`` (and its samples are seeded by
    ``(seed, i, sample)``), whatever the number of processes; rank ``r`` takes batches
    ``r, r + w, r + 2w, ...``. Returns ``(batch index, video indices)`` pairs.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    starts = range(0, count, batch_size)
    return [(i, list(range(s, min(s + batch_size, count)))) for i, s in enumerate(starts) if i % world_size == rank]


def run(args: argparse.Namespace, info: DistInfo) -> dict:
    """Predict, write the videos and ``metrics.json``; the result dict (on every rank).

    Under ``torchrun`` (``info`` from :func:`tools.distributed.process_group`) each process
    evaluates its share of the batches (:func:`shard_batches`) and writes those videos; rank 0
    gathers the metrics and writes ``grid.png`` and ``metrics.json``, the same as one process would.
    """
    device = info.device
    predictor, cfg = load_predictor(args.ckpt, device, raw_weights=args.raw_weights)
    options = sample_options(args)
    check_sample_options(predictor, options, args.ckpt)
    k = args.cond_frames if args.cond_frames is not None else predictor.cond_frames
    p = args.pred_frames if args.pred_frames is not None else predictor.frames
    if k < 1 or p < 1:
        raise ConfigError("--cond_frames and --pred_frames must be at least 1")
    if args.num_samples < 1 or args.num_videos < 1:
        raise ConfigError("--num_samples and --num_videos must be at least 1")
    data = cfg.data
    if args.data is not None:
        data.name = args.data
        data.path = args.data_path
    elif args.data_path is not None:
        data.path = args.data_path
    data.frames = k + p
    dataset = build_dataset(data, args.split, cfg.seed)
    count = min(args.num_videos, len(dataset))
    if count < args.num_videos and info.is_main:
        print(f"note: --num_videos {args.num_videos} capped at {count}, the size of the {args.split} split",
              file=sys.stderr)
    mine = shard_batches(count, args.batch_size, info.rank, info.world_size)
    loader = DataLoader(Subset(dataset, range(count)), batch_sampler=[indices for _, indices in mine],
                        num_workers=args.num_workers, worker_init_fn=init_worker)

    out = Path(args.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    protocol = EvalProtocol(cond_frames=k)
    model_eval = PredictionEvaluator(args.metrics, protocol, device=device, i3d_path=args.i3d)
    shared = dict(device=device, lpips_model=model_eval.lpips_model, st_lpips_model=model_eval.st_lpips_model,
                  i3d=model_eval.i3d, i3d_path=args.i3d)
    base_eval = PredictionEvaluator(args.metrics, protocol, **shared)
    # The first stage's ceiling: the TRUE future through the method's first stage (a perfect
    # second stage). A model cannot beat it; far below the baseline, the first stage is what
    # limits the predictions.
    ceiling_eval = PredictionEvaluator(args.metrics, protocol, **shared)
    evaluators = {"model": model_eval, "copy_last_frame": base_eval, "first_stage_ceiling": ceiling_eval}
    strips: dict[int, torch.Tensor] = {}
    bar = tqdm(total=sum(len(v) for _, v in mine) * args.num_samples, desc="predicting", unit="sample",
               dynamic_ncols=True, disable=not info.is_main)
    for (batch_index, indices), batch in zip(mine, loader):
        video = batch["video"].to(device)
        observed, future = video[:, :, :k], video[:, :, k:]
        names = [f"video{int(i):05d}" for i in batch["index"]]
        samples = []
        for s in range(args.num_samples):
            generator = sample_generator(args.seed, batch_index, s)
            with inference_autocast(args.precision, device):
                sample = rollout(predictor, observed, p, generator, **options)
            samples.append(sample.float().clamp(-1, 1))
            bar.update(len(names))
        samples_t = torch.stack(samples, dim=1)  # [B, N, C, P, H, W]
        model_eval.update(video, samples_t, names)
        base_eval.update(video, copy_last_frame_baseline(observed, p)[:, None], names)
        with inference_autocast(args.precision, device):
            ceiling = first_stage_ceiling(predictor, observed, future)
        ceiling_eval.update(video, ceiling.float()[:, None], names)
        for i, name in enumerate(names):
            shown = pseudo_clip(observed[i:i + 1], p)
            write_video(out / "videos" / f"{name}.gif",
                        to_uint8(torch.cat([shown, future[i:i + 1], samples_t[i:i + 1, 0]], dim=-1)[0]))
            for s in range(args.num_samples):
                frames = to_uint8(samples_t[i, s])
                write_video(out / "videos" / f"{name}_s{s}.npy", frames)
                write_video(out / "videos" / f"{name}_s{s}.mp4", frames)
        if indices[0] < GRID_VIDEOS:
            strips[batch_index] = torch.stack([future, samples_t[:, 0]], dim=1).flatten(0, 1).cpu()
    bar.close()

    if info.distributed:
        sizes = [len(indices) for _, indices in mine]
        ids = [b for b, _ in mine]
        gathered = gather_objects({"ids": ids, "sizes": sizes, "strips": strips,
                                   "states": {key: e.export_batches() for key, e in evaluators.items()}})
        if info.is_main:
            for key, evaluator in evaluators.items():
                evaluator.load_batches([(g["ids"], g["sizes"], g["states"][key]) for g in gathered])
            strips = {b: strip for g in gathered for b, strip in g["strips"].items()}

    result = None
    if info.is_main:
        grid = frame_strip(torch.cat([strips[b] for b in sorted(strips)])[: 2 * GRID_VIDEOS])  # truth above prediction
        write_video(out / "grid.png", grid[None])
        result = {
            **{key: evaluator.compute() for key, evaluator in evaluators.items()},
            "checkpoint": str(args.ckpt),
            "settings": {"data": OmegaConf.to_container(data, resolve=True), "split": args.split, "num_videos": count,
                         "num_samples": args.num_samples, "cond_frames": k, "pred_frames": p,
                         "rollout_clips": -(-p // predictor.frames), "seed": args.seed,
                         "batch_size": args.batch_size, "weights": "raw" if args.raw_weights else "ema", "precision": args.precision,
                         **predictor.settings(**options)},
        }
        result["curves_png"] = write_curves(result, out / "curves.png")
        (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    return broadcast_object(result)


# The three rows of every validation: the model, the copy-last-frame baseline, the first-stage ceiling.
COLUMNS = {"model": "model", "copy_last_frame": "copy last frame", "first_stage_ceiling": "first-stage ceiling"}


def write_curves(result: dict, path: Path) -> Optional[str]:
    """PSNR/SSIM/LPIPS per predicted frame for the three rows, as a PNG; its name beside
    ``metrics.json`` (None when no frame metric ran)."""
    s = result["settings"]
    title = (f"{Path(result['checkpoint']).parent.name}: {s['num_videos']} videos x {s['num_samples']} sample(s), "
             f"{s['cond_frames']} observed + {s['pred_frames']} predicted frames")
    drawn = plot_curves({label: result[key] for key, label in COLUMNS.items()}, path, title=title)
    return drawn.name if drawn else None


def print_summary(result: dict, out: str) -> None:
    model = result["model"]["summary"]
    keys = [key for key in model if not key.endswith("_std") and isinstance(model[key], (int, float))]
    print(f"\n{'metric':<26}" + "".join(f"{title:>21}" for title in COLUMNS.values()))
    for key in keys:
        values = [result[c]["summary"].get(key) for c in COLUMNS]
        print(f"{key:<26}" + "".join(f"{v:>21.4f}" if isinstance(v, (int, float)) else f"{'-':>21}" for v in values))
    skipped = result["model"].get("skipped") or {}
    if skipped:
        print(f"left out: {', '.join(skipped)} (reasons in metrics.json)")
    print(f"\nvideos, grid.png, curves.png and metrics.json in {out}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_device(args.device)  # before anything is created
        with process_group(args.device) as info:
            result = run(args, info)
            if info.is_main:
                print_summary(result, args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
