"""Long-horizon comparison: per-frame curves of several methods' long rollouts on one plot and one JSON.

    python scripts/long_horizon.py RSVP-S2=OUT/long_s2/metrics.json PVDM=OUT/long_pvdm/metrics.json \
        --json OUT/long_horizon.json --png docs/long_horizon.png > OUT/long_horizon.txt

Each ``metrics.json`` is a ``validate.py --pred_frames P`` run (P longer than a clip: the method
rolls out clip by clip). Per method: the mean curve of every frame metric, its first-stage ceiling
(the true future through its own first stage, clip by clip), and once the copy-last-frame baseline
(the same for every method on the same videos; checked). The JSON holds every curve and a table
of values at a few horizons; :func:`markdown` renders that table for docs/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.plots import plot_curves  # noqa: E402

BASELINE = "copy last frame"
LABELS = {"psnr": "PSNR (higher is better)", "ssim": "SSIM (higher is better)",
          "st_lpips": "ST-LPIPS (lower is better; not comparable with LPIPS)"}


def horizons(pred_frames: int) -> list[int]:
    """The horizons (1-based predicted frame) tabulated: the first, then every quarter of the rollout."""
    return sorted({1, *(max(1, round(pred_frames * q / 4)) for q in (1, 2, 3, 4))})


def collect(runs: dict[str, dict]) -> dict:
    """Curves by label (methods, their ceilings, the baseline) and the protocol they share."""
    protocols = {name: (r["settings"]["num_videos"], r["settings"]["cond_frames"], r["settings"]["pred_frames"],
                        r["settings"]["seed"], r["settings"]["data"]["name"]) for name, r in runs.items()}
    if len(set(protocols.values())) != 1:
        raise SystemExit(f"the runs were not made under one protocol (videos, observed, predicted, seed, data): "
                         f"{protocols}")
    first = next(iter(runs.values()))
    baseline = first["copy_last_frame"]["curves"]
    for name, r in runs.items():
        if r["copy_last_frame"]["curves"]["psnr"]["mean"] != baseline["psnr"]["mean"]:
            raise SystemExit(f"{name}'s copy-last-frame curve differs from the others': not the same videos")
    curves = {BASELINE: baseline}
    curves.update({name: r["model"]["curves"] for name, r in runs.items()})
    # Methods that share a first stage share its ceiling: one curve, named after all of them.
    ceilings: dict[str, tuple[list[str], dict]] = {}
    for name, r in runs.items():
        if "first_stage_ceiling" in r:
            key = json.dumps(r["first_stage_ceiling"]["curves"], sort_keys=True)
            ceilings.setdefault(key, ([], r["first_stage_ceiling"]["curves"]))[0].append(name)
    for names, ceiling in ceilings.values():
        curves[f"first-stage ceiling of {', '.join(names)}"] = ceiling
    s = first["settings"]
    return {"protocol": {"num_videos": s["num_videos"], "num_samples": {n: r["settings"]["num_samples"]
                                                                         for n, r in runs.items()},
                         "cond_frames": s["cond_frames"], "pred_frames": s["pred_frames"], "seed": s["seed"],
                         "data": s["data"]["name"], "resolution": s["data"]["resolution"]},
            "curves": curves}


def table(result: dict) -> dict[str, dict[str, dict[int, float]]]:
    """``{metric: {label: {horizon: mean value}}}`` at :func:`horizons`."""
    steps = horizons(result["protocol"]["pred_frames"])
    out: dict = {}
    for label, curves in result["curves"].items():
        for metric, values in curves.items():
            if isinstance(values, dict) and "mean" in values:
                out.setdefault(metric, {})[label] = {h: values["mean"][h - 1] for h in steps}
    return out


def markdown(result: dict, png: str | None = None) -> str:
    """The long-horizon section's tables (PSNR and SSIM at each tabulated horizon) and the plot."""
    p = result["protocol"]
    lines = [f"{p['num_videos']} test videos, {p['cond_frames']} observed -> {p['pred_frames']} predicted frames, "
             f"rolled out clip by clip; mean over samples (samples per video: "
             f"{', '.join(f'{k} {v}' for k, v in p['num_samples'].items())}), seed {p['seed']}.", ""]
    for metric, rows in result["table"].items():
        steps = list(next(iter(rows.values())))
        lines += [f"{LABELS.get(metric, metric)} at predicted frame:", "",
                  "| method | " + " | ".join(str(h) for h in steps) + " |", "|---" * (len(steps) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(f"{v:.4f}" for v in values.values()) + " |"
                  for label, values in rows.items()]
        lines.append("")
    if png:
        lines += [f"![long-horizon curves]({png})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=metrics.json")
    parser.add_argument("--json", required=True, help="where to write the curves and the table")
    parser.add_argument("--png", help="where to draw the curves")
    parser.add_argument("--link", help="how the document refers to the PNG (default: its file name, for a "
                                       "document in the same folder)")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"error: expected NAME=metrics.json of a validate.py run, got {item!r}", file=sys.stderr)
            return 2
        runs[name] = json.loads(Path(path).read_text())
    result = collect(runs)
    result["table"] = table(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    if args.png:
        p = result["protocol"]
        plot_curves(result["curves"], args.png, title=f"{p['data']} {p['resolution']}px: {p['cond_frames']} observed "
                                                      f"-> {p['pred_frames']} predicted, {p['num_videos']} videos")
        result["png"] = args.png
    print(markdown(result, args.link or (Path(args.png).name if args.png else None)))
    print(f"written to {args.json}" + (f" and {args.png}" if args.png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
