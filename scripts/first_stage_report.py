"""Does a first stage work? Every number of docs/FIRST_STAGE.md's checklist, on the test split.

    python scripts/first_stage_report.py --first_model results/first_stage_main_shapes_42/model_last.pth \
        [--num_clips 64] [--first_clip 0] [--cond_frames 4] [--out report.json] [--warp_temperature 0.4]

On ``--num_clips`` test clips from clip ``--first_clip`` on it prints (and writes as JSON with ``--out``):

* reconstruction PSNR/SSIM of T-frame clips beside the temporal-mean bound (the best a decoder
  that ignores motion can reach);
* whether motion is used: the temporal-variance ratio (reconstruction / input), the PSNR between
  a clip's reconstruction and its decoding with another clip's motion (low = motion matters) or
  with random codebook motion, and, where the data has sprite masks, the motion-swap IoU with
  the motion source's and the appearance source's sprites;
* the prediction ceiling: on clips of K + T frames, the observed scene/object decoded with the
  true future motion, beside copying the last observed frame.

``--warp_temperature`` decodes a warp first stage with both warps' softmax at that temperature
(``model.vqvae.warp_temperature``; below 1 the offset mixtures sharpen towards copies).

The decomposition numbers are the ones the first stage logs at every sample step
(``tools/experiments/decomposition.py``), averaged over batches of ``--batch`` clips.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402
from tqdm import tqdm  # noqa: E402

from evaluation.frame_metrics import psnr_per_frame, ssim_per_frame  # noqa: E402
from models.latent_space import SemanticLatentSpace  # noqa: E402
from tools.config import ConfigError  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.decomposition import decomposition_report, temporal_variance_ratio  # noqa: E402
from tools.experiments.first_stage import first_stage_data, split_anchor  # noqa: E402
from tools.pretrained import load_first_stage  # noqa: E402

KEYS = {  # report key -> decomposition_report key
    "temporal_mean_psnr": "decomp/temporal_mean_psnr",
    "temporal_variance_ratio": "decomp/temporal_variance_ratio",
    "other_motion_psnr": "decomp/other_motion_psnr",
    "random_motion_psnr": "decomp/motion_sensitivity_psnr",
    "swap_iou_motion_src": "decomp/swap_iou_motion_src",
    "swap_iou_appearance_src": "decomp/swap_iou_appearance_src",
    "recon_iou": "decomp/recon_iou",
}


def binomial_blur(video: torch.Tensor) -> torch.Tensor:
    """Every frame of ``[B, C, T, H, W]`` smoothed by the 3x3 binomial kernel [1,2,1]x[1,2,1]/16
    (borders repeated): the reference that calibrates the temporal-variance ratio, which drops
    steeply with blur because most of a textured sprite's temporal variance is its texture."""
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=video.dtype)
    kernel = (kernel[:, None] * kernel[None]) / 16
    frames = torch.nn.functional.pad(video.flatten(0, 2)[:, None], (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(frames, kernel[None, None]).reshape(video.shape)


def clip_range(dataset, first: int, count: int) -> range:
    """The test clips scored: ``count`` from clip ``first`` on, as many as the split holds. A
    setting (e.g. a warp temperature) chosen on some clips is checked on others with ``first``."""
    if not 0 <= first < len(dataset):
        raise ConfigError(f"--first_clip {first} is outside the test split's {len(dataset)} clips")
    return range(first, min(first + count, len(dataset)))


def clip_batches(dataset, clips: range, size: int, desc: str):
    """``clips`` in batches of ``size``, with a progress bar on stderr (a pass over 64 clips at
    64x64 takes minutes on a CPU; stdout keeps only the report)."""
    with tqdm(total=len(clips), desc=desc, unit="clip", leave=False, file=sys.stderr) as bar:
        for start in range(clips.start, clips.stop, size):
            stop = min(clips.stop, start + size)
            yield default_collate([dataset[i] for i in range(start, stop)])
            bar.update(stop - start)


@torch.no_grad()
def reconstruction(model, cfg, num_clips: int, batch_size: int, first_clip: int = 0) -> dict[str, float]:
    """Reconstruction quality and the decomposition diagnostics, averaged over batches."""
    test = build_dataset(first_stage_data(cfg), "test")
    sums: dict[str, float] = {}
    batches = 0
    for batch in clip_batches(test, clip_range(test, first_clip, num_clips), batch_size, "reconstruction"):
        anchor, batch = split_anchor(cfg, batch)
        video = batch["video"]
        recon = model(video, anchor=anchor)["recon"].clamp(-1, 1)
        blurred = binomial_blur(video)
        numbers = {"recon_psnr": psnr_per_frame(recon, video).mean(), "recon_ssim": ssim_per_frame(recon, video).mean(),
                   "blurred_truth_psnr": psnr_per_frame(blurred, video).mean(),
                   "blurred_truth_tv_ratio": temporal_variance_ratio(blurred, video)}
        report = decomposition_report(model, batch, torch.device("cpu"), anchor)
        numbers.update({k: report[v] for k, v in KEYS.items() if v in report})
        for k, v in numbers.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        batches += 1
    return {k: v / batches for k, v in sums.items()}


@torch.no_grad()
def ceiling(model, cfg, num_clips: int, cond_frames: int, batch_size: int, first_clip: int = 0) -> dict[str, float]:
    """Observed scene/object + true future motion, against copying the last observed frame."""
    test = build_dataset(OmegaConf.merge(cfg.data, {"frames": cond_frames + model.frames}), "test")
    space = SemanticLatentSpace(model, scale=1.0)
    sums = {"ceiling_psnr": 0.0, "ceiling_ssim": 0.0, "copy_last_psnr": 0.0, "copy_last_ssim": 0.0}
    batches = 0
    for batch in clip_batches(test, clip_range(test, first_clip, num_clips), batch_size, "ceiling"):
        video = batch["video"]
        observed, future = video[:, :, :cond_frames], video[:, :, cond_frames:]
        decoded = space.decode(space.condition(observed), space.target(future, observed))
        copy_last = observed[:, :, -1:].expand_as(future)
        for name, frames in (("ceiling", decoded), ("copy_last", copy_last)):
            sums[f"{name}_psnr"] += float(psnr_per_frame(frames, future).mean())
            sums[f"{name}_ssim"] += float(ssim_per_frame(frames, future).mean())
        batches += 1
    return {k: v / batches for k, v in sums.items()}


# The first-stage targets on `shapes` (docs/FIRST_STAGE.md, "Is the decomposition real?"): the
# reconstruction PSNR asked at each (resolution, frames) setting, and the settings-free ones.
SHAPES_PSNR_TARGETS = {(32, 8): 28.0, (64, 16): 26.0}
MIN_TV_RATIO, MAX_OTHER_MOTION_PSNR, MIN_CEILING_GAIN = 0.8, 22.0, 3.0


def target_lines(r: dict) -> list[str]:
    """A met/missed row per target the report can judge (the PSNR one only on `shapes` at a
    setting that has one), so that a generated document answers "does it work?" by itself."""
    rows = []

    def check(name: str, value: float, met: bool, goal: str, fmt: str = "{:.2f}") -> None:
        rows.append(f"| {name} | {goal} | {fmt.format(value)} | {'met' if met else 'missed'} |")

    psnr_target = SHAPES_PSNR_TARGETS.get((r["resolution"], r["frames"])) if r.get("data") == "shapes" else None
    if psnr_target is not None:
        check("reconstruction PSNR (dB)", r["recon_psnr"], r["recon_psnr"] >= psnr_target, f"≥ {psnr_target:g}")
    if "temporal_mean_psnr" in r:
        check("reconstruction PSNR above the temporal-mean bound (dB)", r["recon_psnr"] - r["temporal_mean_psnr"],
              r["recon_psnr"] > r["temporal_mean_psnr"], "> 0")
    if "temporal_variance_ratio" in r:
        check("temporal-variance ratio", r["temporal_variance_ratio"], r["temporal_variance_ratio"] >= MIN_TV_RATIO,
              f"≥ {MIN_TV_RATIO:g}", "{:.3f}")
    if "other_motion_psnr" in r:
        check("other-motion PSNR (dB)", r["other_motion_psnr"], r["other_motion_psnr"] <= MAX_OTHER_MOTION_PSNR,
              f"≤ {MAX_OTHER_MOTION_PSNR:g}")
    if "ceiling_psnr" in r:
        gain = r["ceiling_psnr"] - r["copy_last_psnr"]
        check("ceiling PSNR over copying the last frame (dB)", gain, gain >= MIN_CEILING_GAIN, f"≥ {MIN_CEILING_GAIN:g}")
    if not rows:
        return []
    return ["", "| target | asked | measured | result |", "|---|---|---|---|", *rows]


def report_lines(r: dict[str, float]) -> list[str]:
    def row(name: str, key: str, fmt: str = "{:.2f}") -> str:
        return f"| {name} | {fmt.format(r[key]) if key in r else '–'} |"

    temperature = f" decoded at warp temperature {r['warp_temperature']:g}" if "warp_temperature" in r else ""
    first = r.get("first_clip", 0)
    clips = f" (clips {first}-{first + r['num_clips'] - 1})" if first else ""
    return [
        f"First stage `{r['checkpoint']}`{temperature}, {r['num_clips']} test clips{clips} "
        f"({r['frames']} frames at {r['resolution']}x{r['resolution']}; ceiling: {r['cond_frames']} observed + "
        f"{r['frames']} future).", "",
        "| measure | value |", "|---|---|",
        row("reconstruction PSNR (dB)", "recon_psnr"),
        row("reconstruction SSIM", "recon_ssim", "{:.3f}"),
        row("temporal-mean bound PSNR (dB; motion-blind decoder's best)", "temporal_mean_psnr"),
        row("temporal-variance ratio (reconstruction / input)", "temporal_variance_ratio", "{:.3f}"),
        row("for scale: the input blurred by a 3x3 binomial kernel, temporal-variance ratio", "blurred_truth_tv_ratio",
            "{:.3f}"),
        row("for scale: the input blurred by a 3x3 binomial kernel, PSNR (dB)", "blurred_truth_psnr"),
        row("PSNR to own reconstruction, another clip's motion (dB; low = motion used)", "other_motion_psnr"),
        row("PSNR to own reconstruction, random codebook motion (dB)", "random_motion_psnr"),
        row("motion-swap IoU with the motion source's sprites", "swap_iou_motion_src", "{:.3f}"),
        row("motion-swap IoU with the appearance source's sprites", "swap_iou_appearance_src", "{:.3f}"),
        row("reconstruction IoU with its own sprites (the swap's ceiling)", "recon_iou", "{:.3f}"),
        row("first-stage ceiling PSNR (dB; observed scene/object + true future motion)", "ceiling_psnr"),
        row("first-stage ceiling SSIM", "ceiling_ssim", "{:.3f}"),
        row("copy last frame PSNR (dB)", "copy_last_psnr"),
        row("copy last frame SSIM", "copy_last_ssim", "{:.3f}"),
        *target_lines(r),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first_model", required=True, help="a first-stage (or GAN) checkpoint")
    parser.add_argument("--num_clips", type=int, default=64, help="test clips scored (default 64)")
    parser.add_argument("--first_clip", type=int, default=0,
                        help="the first test clip scored (default 0); e.g. 64 checks on clips other than the first 64")
    parser.add_argument("--cond_frames", type=int, default=4, help="observed frames for the ceiling (default 4)")
    parser.add_argument("--batch", type=int, default=16, help="clips per batch (default 16)")
    parser.add_argument("--out", help="also write the numbers to this JSON file")
    parser.add_argument("--warp_temperature", type=float,
                        help="decode with both warps' softmax at this temperature (> 0; a merge: warp first stage)")
    args = parser.parse_args(argv)
    if args.warp_temperature is not None and not args.warp_temperature > 0:
        parser.error(f"--warp_temperature must be positive, got {args.warp_temperature}")
    try:
        trained = load_first_stage(args.first_model)
        if args.warp_temperature is not None:
            if not hasattr(trained.model, "set_warp_temperature"):
                raise ConfigError(f"{args.first_model} is not a MOSO first stage: --warp_temperature needs a warp")
            trained.model.set_warp_temperature(args.warp_temperature)
    except (ConfigError, ValueError) as err:  # a missing, damaged or other-stage checkpoint; no warp
        print(f"error: {err}", file=sys.stderr)
        return 2
    model, cfg = trained.model, trained.config
    torch.manual_seed(0)
    result: dict = {"checkpoint": args.first_model, "num_clips": args.num_clips, "frames": model.frames,
                    "resolution": model.resolution, "cond_frames": args.cond_frames, "data": cfg.data.name}
    if args.warp_temperature is not None:
        result["warp_temperature"] = args.warp_temperature
    if args.first_clip:
        result["first_clip"] = args.first_clip
    try:
        result.update(reconstruction(model, cfg, args.num_clips, args.batch, args.first_clip))
        result.update(ceiling(model, cfg, args.num_clips, args.cond_frames, args.batch, args.first_clip))
    except ConfigError as err:  # --first_clip beyond the test split
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(report_lines(result)))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
