"""Seconds per training step of a second stage on a token folder, measured by a short run of
``train.py`` in a temporary folder (the median of the logged ``time/step``, first log dropped).

    python scripts/step_time.py --config configs/ddpm/rsvp_s2_shapes32.yaml --tokens OUT/tokens_k4 \
        --steps 60 train.batch_size=16

Used to compare second stages on token folders of different sizes back to back, in one process
each, under the same load (e.g. scripts/motion_resolution_ablation.sh).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train  # noqa: E402


def step_time(config: str, tokens: str, steps: int, overrides: Sequence[str], device: str = "cpu") -> float:
    """Median seconds per step of ``steps`` training steps (logged every 10)."""
    with tempfile.TemporaryDirectory() as folder:
        with contextlib.redirect_stdout(sys.stderr):  # stdout: the number alone
            code = train.main_cli(["--config", config, "--tokens", tokens, "--id", "step_time", "--device", device,
                                   f"results_dir={folder}", f"train.max_steps={steps}", "train.log_every=10",
                                   f"train.sample_every={steps + 1}", f"train.ckpt_every={steps + 1}", *overrides])
        if code != 0:
            raise SystemExit(code)
        (log,) = Path(folder).glob("*/metrics.jsonl")
        times = [row["time/step"] for row in map(json.loads, log.read_text().splitlines()) if "time/step" in row]
    if len(times) < 2:
        raise SystemExit(f"error: {steps} steps logged {len(times)} step times; use --steps >= 20")
    return statistics.median(times[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    args = parser.parse_args(argv)
    print(f"{step_time(args.config, args.tokens, args.steps, args.overrides, args.device):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
