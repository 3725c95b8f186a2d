"""Does a warp temperature chosen on one set of test clips hold on the others?

    python scripts/temperature_transfer.py --first_model RUN/model_last.pth --temperatures 0.7,0.65,0.6 \
        [--set_size 64] [--num_sets 4] [--doc docs/FIRST_STAGE.md --block temperature-transfer]

``scripts/reproduce_shapes.sh`` picks a first stage's decoding temperature on test clips 64-127 (the
highest whose temporal-variance ratio reaches 0.8, ``scripts/warp_hardening.py --choose_ratio``) and
scores it on clips 0-63. Whether that choice transfers depends on how much the ratio and the PSNR
differ between sets of 64 clips. This decodes the first ``num_sets`` sets of ``set_size`` test
clips as trained and at each temperature, and prints each set's reconstruction PSNR and ratio, the
lowest over the sets, and all the clips together, so the spread a 64-clip choice has to survive is
measured rather than assumed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from doc_block import check_block_or_exit, publish  # noqa: E402
from tools.config import ConfigError  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.first_stage import first_stage_data  # noqa: E402
from tools.pretrained import load_first_stage  # noqa: E402
from warp_hardening import measure_clips, parse_temperatures  # noqa: E402


def per_set(first_model: str, temperatures: tuple[float, ...], set_size: int, num_sets: int) -> list[list[dict]]:
    """:func:`measure_clips` (as trained, then each temperature) on each set of ``set_size`` clips,
    the checkpoint loaded and the split built once."""
    trained = load_first_stage(first_model)
    test = build_dataset(first_stage_data(trained.config), "test")
    if len(test) < set_size * num_sets:  # a short last set would weigh less in the mean over all clips
        raise ConfigError(f"--set_size {set_size} x --num_sets {num_sets} needs {set_size * num_sets} test clips; "
                          f"the split has {len(test)}")
    return [measure_clips(trained, test, range(i * set_size, (i + 1) * set_size), temperatures,
                          one_hot=False, source=first_model)
            for i in range(num_sets)]


def markdown(sets: list[list[dict]], set_size: int, command: str) -> str:
    """One row per decoding; per set PSNR / ratio, the lowest of each over the sets, and the mean
    over all sets (equal-sized, so the mean of the set means)."""
    names = [f"clips {i * set_size}-{(i + 1) * set_size - 1}" for i in range(len(sets))]
    head = ["decoding", *names, "lowest PSNR", "lowest ratio", f"all {len(sets) * set_size} clips"]
    lines = [f"`{command}`:", "", "PSNR (dB) / temporal-variance ratio per set of test clips:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, row in enumerate(sets[0]):
        cells = [(s[k]["psnr"], s[k]["tv_ratio"]) for s in sets]
        label = row["setting"] if k == 0 else f"temperature {row['temperature']:g}"
        mean_psnr = sum(p for p, _ in cells) / len(cells)
        mean_ratio = sum(r for _, r in cells) / len(cells)
        lines.append("| " + " | ".join([label, *(f"{p:.2f} / {r:.3f}" for p, r in cells),
                                        f"{min(p for p, _ in cells):.2f}", f"{min(r for _, r in cells):.3f}",
                                        f"{mean_psnr:.2f} / {mean_ratio:.3f}"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first_model", required=True, help="a warp first-stage checkpoint")
    parser.add_argument("--temperatures", required=True, help="comma-separated softmax temperatures (each > 0)")
    parser.add_argument("--set_size", type=int, default=64, help="test clips per set (default 64)")
    parser.add_argument("--num_sets", type=int, default=4, help="sets, from clip 0 on (default 4: the 256 test clips)")
    parser.add_argument("--doc", help="write the table into this file's block")
    parser.add_argument("--block", default="temperature-transfer", help="the block's name (default: %(default)s)")
    args = parser.parse_args(argv)
    temperatures = parse_temperatures(parser, args.temperatures)
    if args.set_size < 1 or args.num_sets < 2:
        parser.error(f"--set_size must be at least 1 and --num_sets at least 2, got {args.set_size} and {args.num_sets}")
    check_block_or_exit(parser, args.doc, args.block)  # fail before the measurement, not after it
    torch.manual_seed(0)
    try:
        sets = per_set(args.first_model, temperatures, args.set_size, args.num_sets)
    except ConfigError as err:  # too few clips, a missing checkpoint, a first stage without a warp
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = (f"python scripts/temperature_transfer.py --first_model {args.first_model} --temperatures "
               f"{args.temperatures} --set_size {args.set_size} --num_sets {args.num_sets}")
    publish(markdown(sets, args.set_size, command), args.doc, args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
