"""A markdown table of validate.py results: one row per run, the copy-last-frame baseline first.

    python scripts/results_table.py NAME=results/validate_s2/metrics.json NAME2=... [--out table.md]

Every number is read from the metrics.json files: nothing is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = [("psnr", "PSNR ↑"), ("psnr_best_of_n", "PSNR best-of-N ↑"), ("ssim", "SSIM ↑"),
           ("ssim_best_of_n", "SSIM best-of-N ↑"), ("lpips", "LPIPS ↓"), ("lpips_best_of_n", "LPIPS best-of-N ↓"),
           ("st_lpips", "ST-LPIPS ↓ (not LPIPS)"), ("st_lpips_best_of_n", "ST-LPIPS best-of-N ↓"), ("fvd", "FVD ↓")]
# Shown even when not computed (as "–", with the reason below the table).
ALWAYS = {"psnr", "ssim", "lpips"}


def cell(summary: dict, key: str) -> str:
    value = summary.get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def table(runs: dict[str, dict]) -> str:
    """One row per run, the baseline first; the last column is each run's first-stage ceiling PSNR
    (the true future through that method's own first stage: the best its second stage can do)."""
    first = next(iter(runs.values()))
    keys = [(k, title) for k, title in COLUMNS if k in first["model"]["summary"] or k in ALWAYS]
    ceiling = any("first_stage_ceiling" in r for r in runs.values())
    lines = ["| model | " + " | ".join(title for _, title in keys) + (" | first-stage ceiling PSNR ↑" if ceiling else "")
             + " |", "|---" * (len(keys) + 1 + ceiling) + "|",
             "| copy last frame (baseline) | " + " | ".join(cell(first["copy_last_frame"]["summary"], k)
                                                          for k, _ in keys) + (" | –" if ceiling else "") + " |"]
    for name, result in runs.items():
        own = " | " + cell(result.get("first_stage_ceiling", {}).get("summary", {}), "psnr") if ceiling else ""
        lines.append(f"| {name} | " + " | ".join(cell(result["model"]["summary"], k) for k, _ in keys) + own + " |")
    s = first["settings"]
    lines.append("")
    lines.append(f"{s['num_videos']} test videos, {s['num_samples']} samples each, {s['cond_frames']} observed -> "
                 f"{s['pred_frames']} predicted frames, sampler {s.get('sampler', 'config')} "
                 f"{s.get('steps', '')} steps, seed {s['seed']}, {s['weights']} weights.")
    skipped = first["model"].get("skipped") or {}
    if skipped:
        lines.append(f"Not computed (weights not on this machine): {', '.join(skipped)}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=metrics.json")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        runs[name] = json.loads(Path(path).read_text())
    text = table(runs)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
