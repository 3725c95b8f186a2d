"""Write a results document (docs/RESULTS.md) from validate.py outputs: nothing typed by hand.

    python scripts/write_results.py RSVP-S2=OUT/validate_s2/metrics.json ... --out docs/RESULTS.md \
        --command "bash scripts/reproduce_shapes.sh" [--first_stage RUN_DIR ...] [--stage_times FILE] \
        [--note TEXT ...] [--attach TITLE=FILE ...] [--readme README.md]

The document holds the machine (CPU model, core count, GPU name), the date, the command, the
table of ``scripts/results_table.py`` (the copy-last-frame baseline and the first-stage ceiling
included), each model's training budget read from its run folder, and comparisons computed from
the table (which model is best, by how much it beats or trails the baseline). With ``--readme``
the table and the comparisons also replace the block between the README's results markers.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.results_table import table  # noqa: E402
from tools.hardware import machine_description as machine  # noqa: E402
from tools.train_logging import read_metrics  # noqa: E402


TRAINING_LINE = re.compile(r"training [\w, ]+ \((?P<params>[\d,]+) parameters\).* batch (?P<batch>\d+)/process")


# A stage that took less than this was found finished by `--auto_resume` (or by a newer metrics.json)
# and did no work: its entry in the stage-times file does not replace the time of the run that did.
REUSED_SECONDS = 30


def stage_wall_times(lines: Sequence[str]) -> dict[str, float]:
    """Seconds per stage from ``scripts/lib_stages.sh``'s ``NAME SECONDS [exit=STATUS]`` lines.

    A stage's time is its last run that did work plus the stopped runs (``exit=``) it resumed; a
    stage whose last run stopped is listed as ``NAME (not finished)`` with the time spent so far.
    """
    done: dict[str, float] = {}
    stopped: dict[str, float] = {}  # time of stopped runs not yet followed by a finished one
    for line in lines:
        words = line.split()
        was_stopped = words[-1].startswith("exit=")
        if was_stopped:
            words.pop()
        name, seconds = " ".join(words[:-1]), float(words[-1])
        if was_stopped:
            stopped[name] = stopped.get(name, 0.0) + seconds
            continue
        carried = stopped.pop(name, 0.0)
        if carried or name not in done or seconds >= REUSED_SECONDS:
            done[name] = carried + seconds
    return {**done, **{f"{name} (not finished)": seconds for name, seconds in stopped.items()}}


def training_budget(run_dir: Path) -> dict:
    """Steps, batch, parameters and summed step time of a training run folder."""
    info: dict = {"run": str(run_dir)}
    log = run_dir / "log.txt"
    if log.is_file():
        for line in log.read_text().splitlines():
            # the Trainer's first line: "training model[, disc, ...] (N parameters) ... batch B/process"
            found = TRAINING_LINE.search(line)
            if found:
                info["parameters"], info["batch"] = found.group("params"), found.group("batch")
                break
    seconds, last_step = 0.0, 0
    for record in read_metrics(run_dir / "metrics.jsonl"):
        if "time/step" in record:
            seconds += record["time/step"] * (record["step"] - last_step)
            last_step = record["step"]
    info["steps"], info["train_minutes"] = last_step, seconds / 60
    return info


# (summary key, name, higher is better) of the metrics the comparisons speak about.
METRICS = (("psnr", "PSNR", True), ("ssim", "SSIM", True), ("lpips", "LPIPS", False),
           ("st_lpips", "ST-LPIPS", False))


def against_baseline(name: str, run: dict, base: dict) -> str:
    """Where one model stands against copying the last frame, metric by metric."""
    parts = []
    for key, label, higher in METRICS:
        value, ref = run["model"]["summary"].get(key), base.get(key)
        if isinstance(value, (int, float)) and isinstance(ref, (int, float)):
            wins = value > ref if higher else value < ref
            parts.append(f"{label} {value:.4f} ({'beats' if wins else 'loses to'} {ref:.4f})")
    return f"- {name} against copying the last frame: " + ", ".join(parts) + "."


def comparisons(runs: dict[str, dict]) -> list[str]:
    """Sentences computed from the numbers: the best model and its margin over the baseline."""
    lines = []
    first = next(iter(runs.values()))
    base = first["copy_last_frame"]["summary"]
    for key, name, higher in METRICS:
        scored = {n: r["model"]["summary"].get(key) for n, r in runs.items()}
        scored = {n: v for n, v in scored.items() if isinstance(v, (int, float))}
        if not scored or not isinstance(base.get(key), (int, float)):
            continue
        best = (max if higher else min)(scored, key=scored.get)
        margin = scored[best] - base[key]
        beats = margin > 0 if higher else margin < 0
        lines.append(f"- {name} (mean over samples): best model {best} {scored[best]:.4f}, "
                     f"{'better' if beats else 'worse'} than copying the last frame ({base[key]:.4f}) "
                     f"by {abs(margin):.4f}.")
    lines += [against_baseline(name, run, base) for name, run in runs.items()]
    for name, run in runs.items():
        ceiling = run.get("first_stage_ceiling", {}).get("summary", {}).get("psnr")
        if isinstance(ceiling, (int, float)) and isinstance(base.get("psnr"), (int, float)):
            lines.append(f"- {name}'s first-stage ceiling (the true future through its own first stage): "
                         f"PSNR {ceiling:.4f}, {'above' if ceiling > base['psnr'] else 'below'} the baseline: "
                         + ("a perfect second stage could beat copying the last frame."
                            if ceiling > base["psnr"] else
                            "with this first stage no second stage can beat copying the last frame."))
    return lines


def document(runs: dict[str, dict], command: str, stage_times: str | None, extra_runs: list[Path],
             notes: Sequence[str] = (), attachments: Sequence[tuple[str, Path]] = ()) -> str:
    parts = ["# Results on the built-in `shapes` data", "",
             "Generated by `scripts/write_results.py` from the `metrics.json` files of `validate.py`; "
             "do not edit by hand, re-run the command instead.", "",
             f"- Machine: {machine()}",
             f"- Date: {datetime.date.today().isoformat()}",
             f"- Command: `{command}`", *(f"- Note: {n}" for n in notes), "",
             "## Prediction quality", "", table(runs), "## Comparisons (computed from the table)", "",
             *comparisons(runs), "", "## Training budgets", "",
             "| run | parameters | batch | steps | summed step time (min) |", "|---|---|---|---|---|"]
    run_dirs = [*extra_runs, *(Path(r["checkpoint"]).parent for r in runs.values())]
    for run_dir in run_dirs:
        b = training_budget(run_dir)
        parts.append(f"| `{b['run']}` | {b.get('parameters', '?')} | {b.get('batch', '?')} | {b['steps']} | "
                     f"{b['train_minutes']:.1f} |")
    if stage_times and Path(stage_times).is_file():
        parts += ["", f"## Wall time per stage (its last run with the stopped runs it resumed; a re-run under "
                      f"{REUSED_SECONDS} s found the stage finished and keeps the earlier time)", "",
                  "| stage | minutes |", "|---|---|"]
        times = stage_wall_times(Path(stage_times).read_text().splitlines())
        parts += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in times.items()]
    for title, path in attachments:  # another script's printed output, verbatim
        lines = path.read_text().rstrip().splitlines()
        if lines and lines[-1].startswith("written to "):
            lines = lines[:-1]  # the script's own note on where it wrote the numbers
        markdown = any(line.startswith("|") for line in lines)  # a table prints as a table
        parts += ["", f"## {title}", "", f"Output of the script that wrote `{path}`:", "",
                  *(line if markdown else "    " + line for line in lines)]
    return "\n".join(parts) + "\n"


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(path: Path, runs: dict[str, dict], source: str) -> None:
    """Replace the README block between the results markers with the table and the comparisons."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{path} has no '{README_START}' ... '{README_END}' block to update")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = "\n".join([README_START, f"<!-- generated by scripts/write_results.py from {source}; do not edit -->",
                       f"Machine: {machine()}; {datetime.date.today().isoformat()}.", "", table(runs),
                       *comparisons(runs), README_END])
    path.write_text(head + block + tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=metrics.json")
    parser.add_argument("--out", required=True)
    parser.add_argument("--command", required=True, help="the command that produced the runs (printed in the document)")
    parser.add_argument("--first_stage", nargs="*", default=[], help="first-stage run folders to list in the budgets")
    parser.add_argument("--stage_times", help="file of '<stage name> <seconds> [exit=<status>]' lines (scripts/lib_stages.sh)")
    parser.add_argument("--readme", help="also update this README's results block")
    parser.add_argument("--note", action="append", default=[], help="a line added under the command (repeatable)")
    parser.add_argument("--attach", action="append", default=[], metavar="TITLE=FILE",
                        help="a section TITLE holding FILE's text verbatim (repeatable)")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        if not Path(path).is_file():
            parser.error(f"{path} not found (run validate.py first)")
        runs[name] = json.loads(Path(path).read_text())
    attachments = []
    for item in args.attach:
        title, _, path = item.partition("=")
        if not title or not Path(path).is_file():
            parser.error(f"--attach {item!r}: expected TITLE=FILE with an existing file")
        attachments.append((title, Path(path)))
    text = document(runs, args.command, args.stage_times, [Path(p) for p in args.first_stage], args.note,
                    attachments)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    print(f"written to {args.out}")
    if args.readme:
        update_readme(Path(args.readme), runs, args.out)
        print(f"updated the results block of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
