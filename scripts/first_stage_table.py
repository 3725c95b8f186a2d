"""First-stage reports side by side: the issue-12 checklist of several first stages, each scored by
``scripts/first_stage_report.py`` on the same test clips.

    python scripts/first_stage_table.py "LABEL=REPORT.json" ... [--doc docs/FIRST_STAGE.md --block NAME]

Prints a Markdown table; with ``--doc`` writes it into that document's block (default
``first-stage-reports``). Reports of different clip sets or resolutions are refused: their rows
would not compare.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.doc_block import labelled_table_main  # noqa: E402

COLUMNS = (("recon_psnr", "reconstruction PSNR", "{:.2f}"), ("temporal_mean_psnr", "temporal-mean bound", "{:.2f}"),
           ("temporal_variance_ratio", "temporal-variance ratio", "{:.3f}"),
           ("other_motion_psnr", "other-motion PSNR", "{:.2f}"),
           ("swap_iou_motion_src", "swap IoU, motion source", "{:.3f}"),
           ("swap_iou_appearance_src", "swap IoU, appearance source", "{:.3f}"),
           ("ceiling_psnr", "ceiling PSNR", "{:.2f}"), ("copy_last_psnr", "copy-last PSNR", "{:.2f}"))
SAME = ("num_clips", "first_clip", "frames", "resolution", "cond_frames")  # what must agree for rows to compare


def load_report(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: write it with scripts/first_stage_report.py --out")
    report = json.loads(path.read_text())
    missing = [key for key, _, _ in COLUMNS if key not in report]
    if missing:
        raise ValueError(f"{path} is not a first_stage_report.py report (no {', '.join(missing)})")
    return report


def reports_table(paths: dict[str, Path]) -> str:
    reports = {label: load_report(path) for label, path in paths.items()}
    first = next(iter(reports.values()))
    for label, report in reports.items():
        differ = [key for key in SAME if report.get(key) != first.get(key)]
        if differ:
            raise ValueError(f"report {label!r} differs from the first one in {', '.join(differ)}: rows would not compare")
    header = ["first stage"] + [name for _, name, _ in COLUMNS]
    clips = f" (clips {first['first_clip']}-{first['first_clip'] + first['num_clips'] - 1})" if first.get("first_clip") else ""
    lines = [f"{first['num_clips']} test clips{clips}, {first['frames']} frames at {first['resolution']}x{first['resolution']} "
             f"(ceiling and copy-last: {first['cond_frames']} observed frames):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, report in reports.items():
        lines.append("| " + " | ".join([label] + [fmt.format(report[key]) for key, _, fmt in COLUMNS]) + " |")
    sources = ", ".join(f"{label} = `{report['checkpoint']}`" for label, report in reports.items())
    return "\n".join(lines) + f"\n\nCheckpoints: {sources}."


def main(argv: Optional[Sequence[str]] = None) -> int:
    return labelled_table_main(argv, __doc__.split("\n\n")[0], "REPORT.json", "first-stage-reports", reports_table)

if __name__ == "__main__":
    sys.exit(main())
