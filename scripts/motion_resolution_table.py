"""The motion-resolution table of docs/FIRST_STAGE.md (scripts/motion_resolution_ablation.sh):
first-stage checklist, RSVP-S2 at the same budget and its training step time, for the shipped
first stage (down_motion 2), the one with four times the motion tokens (down_motion 1) and any
further first-stage variant (``--row LABEL=FOLDER``, e.g. the warp with content keys)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.doc_block import labelled_paths, replace_block  # noqa: E402

COMMAND = "bash scripts/motion_resolution_ablation.sh"


def row(label: str, folder: Path) -> list[str]:
    report = json.loads((folder / "first_stage_report32.json").read_text())
    s2 = json.loads((folder / "validate_s2" / "metrics.json").read_text())["model"]["summary"]
    seconds = float((folder / "s2_step_time.txt").read_text())
    return [label, f"{report['recon_psnr']:.2f}", f"{report['temporal_variance_ratio']:.3f}",
            f"{report['other_motion_psnr']:.2f}", f"{report['ceiling_psnr']:.2f}", f"{s2['psnr']:.2f}",
            f"{s2['ssim']:.3f}", f"{s2['st_lpips']:.3f}", f"{seconds:.3f} s"]


def step_seconds(folder: Path) -> float:
    return float((folder / "s2_step_time.txt").read_text())


def table(shipped: Path, dm1: Path, extra: Optional[dict[str, Path]] = None) -> str:
    rows = [row("down_motion 2 (shipped): 8x8 motion tokens per frame", shipped),
            row("down_motion 1: 16x16 motion tokens per frame", dm1)]
    rows += [row(label, folder) for label, folder in (extra or {}).items()]
    ratio = step_seconds(dm1) / step_seconds(shipped)
    copy = json.loads((shipped / "first_stage_report32.json").read_text())["copy_last_psnr"]
    head = ["first stage", "reconstruction PSNR", "temporal-variance ratio", "other-motion PSNR", "ceiling PSNR",
            "RSVP-S2 PSNR", "RSVP-S2 SSIM", "RSVP-S2 ST-LPIPS", "RSVP-S2 training step"]
    lines = [f"`{COMMAND}` (64 test clips; RSVP-S2: 4 samples each, the comparison's budget; copy-last "
             f"{copy:.2f} dB):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    others = "".join(f"; on those of {label}, {step_seconds(folder) / step_seconds(shipped):.1f}x"
                     for label, folder in (extra or {}).items())
    lines += ["", f"A RSVP-S2 training step on the down_motion 1 tokens takes {ratio:.1f}x as long as on the shipped "
              f"ones{others} (each measured by `scripts/step_time.py`, same batch, one process each)."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipped", required=True, help="folder of the shipped first stage's comparison")
    parser.add_argument("--dm1", required=True, help="folder of the down_motion 1 comparison")
    parser.add_argument("--row", action="append", default=[], metavar="LABEL=FOLDER",
                        help="a further first-stage variant's comparison folder (repeatable)")
    parser.add_argument("--doc", help="replace the motion-resolution block of this document")
    args = parser.parse_args(argv)
    extra = labelled_paths(parser, args.row, "FOLDER")
    try:
        text = table(Path(args.shipped), Path(args.dm1), extra)
    except (FileNotFoundError, KeyError, ValueError) as err:
        parser.error(f"{err} (is every folder a finished comparison?)")
    print(text)
    if args.doc:
        replace_block(Path(args.doc), "motion-resolution", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
