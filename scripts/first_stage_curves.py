"""Held-out curves of first-stage runs side by side, from their ``metrics.jsonl``: reconstruction
PSNR (EMA weights), temporal-variance ratio and other-motion PSNR at every sample step.

    python scripts/first_stage_curves.py "LABEL=RUN_DIR" ... [--doc docs/FIRST_STAGE.md]

Prints a Markdown table; with ``--doc`` writes it into that document's ``curves`` block (or
``--block NAME``). The
held-out clips are the run's ``model.eval_clips`` first test clips, the same in every run of one
dataset and resolution, so rows compare recipes at equal training steps.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.doc_block import labelled_table_main  # noqa: E402

COLUMNS = (("eval/psnr", "PSNR", "{:.2f}"), ("decomp/temporal_variance_ratio", "TV ratio", "{:.3f}"),
           ("decomp/other_motion_psnr", "other-motion PSNR", "{:.2f}"))


def sample_records(run_dir: Path) -> dict[int, dict]:
    """Step -> the sample-step record (the one with ``eval/psnr``) of a run's last attempt at it."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a first-stage run folder?")
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {int(r["step"]): r for r in records if "eval/psnr" in r}


def curves_table(runs: dict[str, Path]) -> str:
    per_run = {label: sample_records(path) for label, path in runs.items()}
    steps = sorted(set().union(*per_run.values()))
    header = ["step"] + [f"{label}: {name}" for label in runs for _, name, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for step in steps:
        cells = [str(step)]
        for label in runs:
            record = per_run[label].get(step, {})
            cells += [fmt.format(record[key]) if key in record else "–" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    sources = ", ".join(f"{label} = `{path}`" for label, path in runs.items())
    return "\n".join(lines) + f"\n\nRuns: {sources}. Held-out clips, EMA weights."


def main(argv: list[str] | None = None) -> int:
    return labelled_table_main(argv, __doc__.split("\n\n")[0], "RUN_DIR", "curves", curves_table)

if __name__ == "__main__":
    sys.exit(main())
