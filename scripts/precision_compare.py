"""What bf16 inference changes in a trained predictor's scores: validate.py twice, fp32 and bf16.

    python scripts/precision_compare.py --ckpt results/.../model_last.pth --out results/precision \
        [--doc docs/BENCHMARKS.md] [validate.py options, e.g. --num_videos 64 --num_samples 4 --sampler dpm --steps 20]

Both runs get the same options and seed, so the only difference is the precision of the
prediction (``validate.py --precision``). Prints, and with ``--doc`` writes into the file's
``precision`` block, each run's PSNR / SSIM (and ST-LPIPS when scored), the copy-last-frame
baseline and the wall time of the whole validation (data, prediction and metrics).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from doc_block import publish  # noqa: E402
import validate  # noqa: E402

PRECISIONS = ("fp32", "bf16")
SCORES = ("psnr", "ssim", "st_lpips")


def run_both(ckpt: str, out: Path, options: list[str]) -> dict[str, dict]:
    """``{precision: {"model": summary, "copy_last_frame": summary, "seconds": wall time}}``."""
    runs = {}
    for precision in PRECISIONS:
        folder = out / precision
        start = time.perf_counter()
        code = validate.main(["--ckpt", ckpt, "--out", str(folder), "--precision", precision, *options])
        if code != 0:
            raise SystemExit(code)
        metrics = json.loads((folder / "metrics.json").read_text())
        runs[precision] = {"model": metrics["model"]["summary"], "copy_last_frame": metrics["copy_last_frame"]["summary"],
                           "seconds": time.perf_counter() - start, "settings": metrics["settings"]}
    return runs


def markdown(runs: dict[str, dict], command: str) -> str:
    scores = [k for k in SCORES if all(k in r["model"] for r in runs.values())]
    settings = runs["fp32"]["settings"]
    lines = [f"`{command}` ({settings['num_videos']} test videos x {settings['num_samples']} samples, "
             f"{settings.get('sampler', '')} {settings.get('steps', '')} steps):", "",
             "| precision | " + " | ".join(scores) + " | validation wall time |",
             "|---|" + "---|" * len(scores) + "---|"]
    for precision, r in runs.items():
        lines.append(f"| {precision} | " + " | ".join(f"{r['model'][k]:.3f}" for k in scores) + f" | {r['seconds']:.0f} s |")
    copy = runs["fp32"]["copy_last_frame"]
    lines.append("| copy last frame | " + " | ".join(f"{copy[k]:.3f}" for k in scores) + " | – |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a predictor's checkpoint")
    parser.add_argument("--out", required=True, help="folder for the two validation runs (fp32/, bf16/)")
    parser.add_argument("--doc", help="write the table into this file's precision block")
    args, options = parser.parse_known_args(argv)
    if "--precision" in options:
        parser.error("--precision is what this script varies; leave it out")
    runs = run_both(args.ckpt, Path(args.out), options)
    command = " ".join(["python scripts/precision_compare.py", "--ckpt", args.ckpt, "--out", args.out, *options])
    text = markdown(runs, command)
    publish(text, args.doc, "precision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
