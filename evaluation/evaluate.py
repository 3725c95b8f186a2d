"""Evaluate a folder of generated videos against a folder of ground-truth videos.

    python -m evaluation.evaluate --real DIR --fake DIR [--metrics psnr,ssim,lpips,st_lpips,fvd,kvd]
        [--i3d PATH] [--lpips_net alex|vgg] [--st_lpips_net alex|vgg] [--cond_frames K]
        [--fvd_observed include|exclude]
        [--out metrics.json] [--curves PATH.png] [--batch_size 8] [--device cuda|cpu]

Videos are matched by name (file name without extension; a folder of frame images counts as one
video). Accepted: .mp4 .avi .gif (any format tools.video_io.read_video decodes), .npy uint8
``[T, H, W, C]`` and folders of frames. Several samples per video: make the fake entry a folder
holding one video file per sample (``fake/clip007/s0.mp4, s1.mp4, ...``); best-of-N is then
reported beside the mean over samples.

A generated video has as many frames as its ground truth, or -- with ``--cond_frames K`` -- may
hold only the ``T - K`` predicted frames. Names, frame counts and frame sizes that do not match
are errors (exit status 2). Missing LPIPS / I3D weights skip those metrics with a message naming
the file and where it goes; the rest is computed and the JSON records what was left out.
``st_lpips`` (ST-LPIPS, the shift-tolerant LPIPS variant; its weights ship in the stlpips-pytorch
wheel, so it runs offline) is computed only when named in ``--metrics``; its values are not
comparable with LPIPS.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from evaluation.protocol import ALL_METRICS, DEFAULT_METRICS, EvalProtocol, PredictionEvaluator, parse_metrics
from tools.config import check_device
from tools.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, from_uint8, natural_key, read_video

MEDIA_SUFFIXES = tuple(VIDEO_SUFFIXES) + (".npy",)


class DataMismatchError(ValueError):
    """The two folders do not describe the same videos; the message says how."""


# ----------------------------------------------------------------------------------------------
# Folder listing and matching


def _folder_kind(folder: Path) -> str:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    has_media = any(p.suffix.lower() in MEDIA_SUFFIXES for p in files)
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
    if has_media and not has_images:
        return "samples"
    if has_images and not has_media:
        return "frames"
    if has_media and has_images:
        raise DataMismatchError(f"{folder} mixes video files and frame images; it must be either a folder of "
                                f"frames (one video) or a folder of sample videos")
    raise DataMismatchError(f"{folder} holds neither frame images nor video files")


def list_videos(folder: str | Path, allow_sample_folders: bool) -> tuple[dict[str, list[Path]], list[str]]:
    """``name -> [paths]`` (one path, or one per sample) and the names of ignored files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataMismatchError(f"{folder} is not a directory")
    entries: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            kind = _folder_kind(path)
            if kind == "samples":
                if not allow_sample_folders:
                    raise DataMismatchError(f"{path} is a folder of videos; on the --real side every entry is "
                                            f"one video (a file or a folder of frames)")
                paths = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES),
                               key=lambda p: natural_key(p.name))
            else:
                paths = [path]
            name = path.name
        elif path.suffix.lower() in MEDIA_SUFFIXES:
            name, paths = path.stem, [path]
        else:
            ignored.append(path.name)
            continue
        if name in entries:
            raise DataMismatchError(f"two entries named '{name}' in {folder} ({entries[name][0].name} and {path.name})")
        entries[name] = paths
    return entries, ignored


def match_folders(real_dir: str | Path, fake_dir: str | Path) -> tuple[list[str], dict, dict, list[str]]:
    real, ignored_real = list_videos(real_dir, allow_sample_folders=False)
    fake, ignored_fake = list_videos(fake_dir, allow_sample_folders=True)
    if not real:
        raise DataMismatchError(f"no videos in {real_dir}")
    only_real = sorted(set(real) - set(fake), key=natural_key)
    only_fake = sorted(set(fake) - set(real), key=natural_key)
    if only_real or only_fake:
        def show(names):
            return ", ".join(names[:10]) + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
        parts = []
        if only_real:
            parts.append(f"only in --real {real_dir}: {show(only_real)}")
        if only_fake:
            parts.append(f"only in --fake {fake_dir}: {show(only_fake)}")
        raise DataMismatchError("video names do not match (matched by file name without extension); " + "; ".join(parts))
    names = sorted(real, key=natural_key)
    counts = {name: len(fake[name]) for name in names}
    if len(set(counts.values())) != 1:
        by_count: dict[int, list[str]] = {}
        for name, c in counts.items():
            by_count.setdefault(c, []).append(name)
        detail = "; ".join(f"{c} sample(s): {', '.join(v[:5])}" for c, v in sorted(by_count.items()))
        raise DataMismatchError(f"every generated entry must hold the same number of samples; found {detail}")
    notes = [f"ignored non-video files: {', '.join(ignored_real + ignored_fake)}"] if ignored_real + ignored_fake else []
    return names, real, fake, notes


# ----------------------------------------------------------------------------------------------
# Loading batches


def _load(path: Path) -> np.ndarray:
    try:
        return read_video(path)
    except Exception as err:  # decoder errors come in many types
        raise DataMismatchError(f"cannot read {path}: {err}") from err


def load_batch(names: list[str], real: dict, fake: dict, cond_frames: int,
               expected: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth ``[b, 3, T, H, W]`` and samples ``[b, N, 3, T', H, W]`` in [-1, 1], checked."""
    reals, fakes = [], []
    for name in names:
        gt = _load(real[name][0])
        t, h, w = gt.shape[:3]
        if "size" not in expected:
            expected.update(size=(h, w), frames=t, first=real[name][0].name)
        if (h, w) != expected["size"]:
            raise DataMismatchError(f"{real[name][0]} is {h}x{w} but {expected['first']} is "
                                    f"{expected['size'][0]}x{expected['size'][1]}; all videos must share one size")
        if t != expected["frames"]:
            raise DataMismatchError(f"{real[name][0]} has {t} frames but {expected['first']} has {expected['frames']}; "
                                    f"all ground-truth videos must have the same length")
        if cond_frames >= t:
            raise DataMismatchError(f"--cond_frames {cond_frames} leaves no frame to predict in {real[name][0]} ({t} frames)")
        samples = []
        for path in fake[name]:
            video = _load(path)
            if video.shape[1:3] != (h, w):
                raise DataMismatchError(f"{path} is {video.shape[1]}x{video.shape[2]} but its ground truth "
                                        f"{real[name][0]} is {h}x{w}")
            allowed = {t} | ({t - cond_frames} if cond_frames > 0 else set())
            if video.shape[0] not in allowed:
                want = f"{t}" + (f" (or {t - cond_frames} predicted frames only)" if cond_frames > 0 else "")
                raise DataMismatchError(f"{path} has {video.shape[0]} frames but its ground truth {real[name][0]} "
                                        f"has {t}; expected {want}")
            samples.append(video)
        if len({s.shape[0] for s in samples}) != 1:
            raise DataMismatchError(f"the samples of '{name}' have different frame counts")
        if "fake_frames" not in expected:
            expected["fake_frames"] = samples[0].shape[0]
        elif samples[0].shape[0] != expected["fake_frames"]:
            raise DataMismatchError(f"generated videos mix full clips and predicted-only clips "
                                    f"('{name}' has {samples[0].shape[0]} frames, others {expected['fake_frames']})")
        reals.append(from_uint8(gt))
        fakes.append(torch.stack([from_uint8(s) for s in samples]))
    return torch.stack(reals), torch.stack(fakes)


# ----------------------------------------------------------------------------------------------
# Output


def _sanitize(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _sanitize(obj.item())
    return obj


def format_table(result: dict) -> str:
    proto = result["protocol"]
    n = proto.get("samples_per_video") or 1
    lines = [f"{proto['num_videos']} videos x {n} sample(s); frames {proto['total_frames']} "
             f"({proto['cond_frames']} observed, {proto['pred_frames']} predicted); "
             f"{proto['resolution'][0]}x{proto['resolution'][1]}"]
    fm = result.get("frame_metrics", {})
    if fm:
        lines.append(f"{'metric':<16}{'mean over samples':>26}{f'best of {n}':>26}")
        for name, entry in fm.items():
            mean, best = entry["mean"], entry["best_of_n"]
            arrow = "higher is better" if entry["higher_is_better"] else "lower is better"
            lines.append(f"{name:<16}{mean['mean']:>15.4f} ± {mean['ci95']:<8.4f}{best['mean']:>15.4f} ± "
                         f"{best['ci95']:<8.4f}  ({arrow}; ± = 95% CI over videos)")
    for name, entry in result.get("distribution_metrics", {}).items():
        value = entry.get("value")
        text = "n/a" if value is None else f"{value:.6g}"
        extra = ""
        if name.startswith("fvd"):
            extra = f"({entry.get('num_real_clips')} real / {entry.get('num_fake_clips')} generated clips"
            if "per_sample_index" in entry:
                extra += f"; per-sample-index mean {entry['per_sample_index']['mean']:.6g}"
            extra += ")"
        if name.endswith("_standin"):
            extra += "  RANDOM STAND-IN DETECTOR: plumbing check, not a metric"
        lines.append(f"{name:<16}{text:>15}  {extra}")
    if "fvd" in proto:
        lines.append(f"FVD/KVD clips: {proto['fvd']['clip']} ({proto['fvd']['clip_frames']} frames)")
    if result.get("skipped"):
        lines.append(f"skipped: {', '.join(result['skipped'])} (reasons in the JSON under 'skipped')")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Protocol and the mapping to published protocols: docs/EVALUATION.md")
    p.add_argument("--real", required=True, help="folder of ground-truth videos")
    p.add_argument("--fake", required=True, help="folder of generated videos (same names)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: %(default)s)")
    p.add_argument("--i3d", default=None, help="i3d_torchscript.pt (default: $RSVP_I3D, else ~/.cache/rsvp/i3d_torchscript.pt)")
    p.add_argument("--lpips_net", default="alex", choices=["alex", "vgg"])
    p.add_argument("--st_lpips_net", default="alex", choices=["alex", "vgg"], help="ST-LPIPS backbone")
    p.add_argument("--cond_frames", type=int, default=0,
                   help="observed frames at the start of each clip: not scored by PSNR/SSIM/LPIPS")
    p.add_argument("--fvd_observed", default="include", choices=["include", "exclude"],
                   help="FVD/KVD clips with the observed frames (MCVD/ExtDM) or predicted frames only")
    p.add_argument("--fvd_ddof", type=int, default=1, choices=[0, 1],
                   help="covariance normalisation: 1 = unbiased (TF FVD, MCVD), 0 = 1/N (StyleGAN-V)")
    p.add_argument("--num_videos", type=int, default=None, help="use only the first N videos (natural name order)")
    p.add_argument("--out", default="metrics.json", help="JSON output (default: %(default)s)")
    p.add_argument("--curves", default=None, help="per-horizon plot (default: <out>_curves.png)")
    p.add_argument("--batch_size", type=int, default=8, help="videos loaded at a time")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="cuda or cpu (default: cuda if available)")
    p.add_argument("--per_video", action="store_true", help="also store every video's values in the JSON")
    p.add_argument("--kvd_seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_device(args.device)  # before anything is read or written
        metrics = parse_metrics(args.metrics)
        if args.cond_frames < 0:
            raise DataMismatchError("--cond_frames must be >= 0")
        if args.batch_size < 1:
            raise DataMismatchError("--batch_size must be >= 1")
        names, real, fake, notes = match_folders(args.real, args.fake)
        if args.num_videos is not None:
            if args.num_videos < 1:
                raise DataMismatchError("--num_videos must be >= 1")
            if args.num_videos > len(names):
                raise DataMismatchError(f"--num_videos {args.num_videos} but only {len(names)} matched videos")
            names = names[:args.num_videos]
    except (DataMismatchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    protocol = EvalProtocol(cond_frames=args.cond_frames, fvd_include_observed=args.fvd_observed == "include",
                            lpips_net=args.lpips_net, st_lpips_net=args.st_lpips_net, fvd_cov_ddof=args.fvd_ddof,
                            kvd_seed=args.kvd_seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skips and notes are printed below
            evaluator = PredictionEvaluator(metrics, protocol, device=args.device, i3d_path=args.i3d,
                                            keep_per_video=args.per_video)
    except ValueError as err:  # e.g. a weight file that is present but corrupt
        print(f"error: {err}", file=sys.stderr)
        return 2
    announced = dict(evaluator.skipped)
    for name, reason in announced.items():
        print(f"note: skipping {name}: {reason}", file=sys.stderr)
    if not evaluator.active:
        print("error: none of the requested metrics can be computed (see the notes above)", file=sys.stderr)
        return 2

    from tqdm import tqdm

    expected: dict = {}
    try:
        with tqdm(total=len(names), unit="video", desc="evaluating", disable=None) as bar:
            for i in range(0, len(names), args.batch_size):
                chunk = names[i:i + args.batch_size]
                real_batch, fake_batch = load_batch(chunk, real, fake, args.cond_frames, expected)
                evaluator.update(real_batch, fake_batch, names=chunk)
                bar.update(len(chunk))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = evaluator.compute()
    except (DataMismatchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    result["notes"] = notes + result.get("notes", [])
    result["inputs"] = {"real": str(Path(args.real).resolve()), "fake": str(Path(args.fake).resolve()),
                        "num_matched": len(names), "argv": list(sys.argv[1:] if argv is None else argv)}
    out = Path(args.out)
    curves_path = Path(args.curves) if args.curves else out.with_name(out.stem + "_curves.png")
    if result.get("curves"):
        from evaluation.plots import plot_curves

        proto = result["protocol"]
        title = (f"{Path(args.fake).name} vs {Path(args.real).name}: {proto['num_videos']} videos x "
                 f"{proto['samples_per_video']} sample(s), {proto['cond_frames']} observed + "
                 f"{proto['pred_frames']} predicted frames")
        drawn = plot_curves({Path(args.fake).name: result}, curves_path, title=title)
        result["curves"]["png"] = str(drawn) if drawn else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_sanitize(result), indent=2, allow_nan=False))

    print(format_table(result))
    for note in result["notes"]:
        print(f"note: {note}")
    for name, reason in result.get("skipped", {}).items():
        if name not in announced:
            print(f"note: skipped {name}: {reason}")
    print(f"wrote {out}" + (f" and {result['curves']['png']}" if result.get("curves", {}).get("png") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
