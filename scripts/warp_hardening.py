"""How sharp is a warp first stage's motion, and what would committing to one offset cost?

    python scripts/warp_hardening.py --first_model RUN/model_last.pth [--num_clips 64] [--first_clip 0] [--doc docs/FIRST_STAGE.md]

A ``merge: warp`` decoder moves content by a softmax mixture of offsets per cell (the coarse warp
at the merge resolution and, with ``pixel_warp``, a 3x3 warp at full resolution). A mixture of
several offsets blurs what it moves. On ``--num_clips`` test clips this prints, for the trained
weights as they are and with each warp's weights replaced by a one-hot choice of their largest
offset (no retraining), and with ``--temperatures``, the model decoded with both warps' softmax at
each temperature (``model.vqvae.warp_temperature``: logits / τ): reconstruction PSNR, the temporal-variance ratio,
and each warp's mean largest weight and entropy. It measures how much of the gap between the reconstruction's
temporal variance and the input's comes from the mixture, and what PSNR the model would give up
by committing. ``--doc`` writes the table into the file's ``warp-hardening`` block.

``--choose_ratio R --choice_out FILE`` picks a decoding temperature from the sweep: the highest
swept one (or the trained one) whose ratio is at least ``R``, i.e. the least PSNR given up for it;
when none reaches ``R``, the one with the highest ratio. Swept on clips other than those a
checklist scores (``--first_clip``), it is a choice the scored clips did not make.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from doc_block import check_block_or_exit, publish  # noqa: E402
from evaluation.frame_metrics import psnr_per_frame  # noqa: E402
from first_stage_report import clip_batches, clip_range  # noqa: E402
from models.moso import OffsetWarp, one_hot_largest  # noqa: E402
from tools.config import ConfigError  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.decomposition import temporal_variance_ratio  # noqa: E402
from tools.experiments.first_stage import first_stage_data, split_anchor  # noqa: E402
from tools.pretrained import load_first_stage  # noqa: E402

SETTINGS = {"none": "trained (soft mixtures)", "coarse": "coarse warp one-hot", "fine": "fine 3x3 warp one-hot",
            "both": "both warps one-hot"}


@contextlib.contextmanager
def hardened(warps: dict[str, OffsetWarp], which: set[str], stats: dict[str, list[float]]) -> Iterator[None]:
    """Inside the block each warp named in ``which`` uses :func:`one_hot_largest` of its weights;
    every warp's mean largest weight and entropy (of the weights it computes) go into ``stats``."""
    def wrap(name: str, warp: OffsetWarp):
        trained = warp.weights

        def weights(motion: torch.Tensor, frames: int, content: Optional[torch.Tensor] = None) -> torch.Tensor:
            w = trained(motion, frames, content)
            stats.setdefault(f"{name}_max", []).append(float(w.amax(dim=2).mean()))
            stats.setdefault(f"{name}_entropy", []).append(float(-(w * w.clamp_min(1e-12).log()).sum(dim=2).mean()))
            return one_hot_largest(w) if name in which else w
        return weights

    for name, warp in warps.items():
        warp.weights = wrap(name, warp)  # an instance attribute shadows the method inside the block
    try:
        yield
    finally:
        for warp in warps.values():
            del warp.weights


@torch.no_grad()
def measure(first_model: str, num_clips: int, temperatures: tuple[float, ...] = (),
            batch: int = 16, first_clip: int = 0) -> list[dict[str, float]]:
    """:func:`measure_clips` of the checkpoint on ``num_clips`` test clips from ``first_clip`` on."""
    trained = load_first_stage(first_model)
    test = build_dataset(first_stage_data(trained.config), "test")
    return measure_clips(trained, test, clip_range(test, first_clip, num_clips), temperatures, batch, source=first_model)


def measure_clips(trained, test, clips_scored: range, temperatures: tuple[float, ...] = (),
                  batch: int = 16, one_hot: bool = True, source: str = "the first stage") -> list[dict[str, float]]:
    """One row per decoding of a loaded first stage on ``clips_scored`` of ``test``: as trained,
    (``one_hot``) each warp made one-hot, each temperature."""
    model, cfg = trained.model, trained.config
    warps = {name: w for name, w in (("coarse", model.decoder.warp), ("fine", model.decoder.fine)) if w is not None}
    if not warps:
        raise ConfigError(f"{source} has no warp to harden (model.vqvae.merge is not warp)")
    settings = [(SETTINGS[s], set(warps) if s == "both" else {s} - {"none"}, None) for s in SETTINGS
                if s == "none" or one_hot and set(warps) >= ({"coarse", "fine"} if s == "both" else {s})]
    settings += [(f"both warps at temperature {t:g}", set(), t) for t in temperatures]
    trained_temperature = model.cfg.warp_temperature
    rows = []
    try:
        for label, which, temperature in settings:
            stats: dict[str, list[float]] = {}
            psnr, ratio = [], []
            decoded_at = trained_temperature if temperature is None else temperature
            model.set_warp_temperature(decoded_at)
            with hardened(warps, which, stats):
                for clips in clip_batches(test, clips_scored, batch, label):
                    anchor, clips = split_anchor(cfg, clips)
                    video = clips["video"]
                    recon = model(video, anchor=anchor)["recon"].clamp(-1, 1)
                    psnr.append(float(psnr_per_frame(recon, video).mean()))
                    ratio.append(float(temporal_variance_ratio(recon, video)))
            rows.append({"setting": label, "temperature": None if which else decoded_at,
                         "psnr": sum(psnr) / len(psnr), "tv_ratio": sum(ratio) / len(ratio),
                         **{k: sum(v) / len(v) for k, v in stats.items()}})
    finally:  # the model as it came: a caller measuring several sets must find its trained temperature
        model.set_warp_temperature(trained_temperature)
    return rows


def choose_temperature(rows: list[dict], min_ratio: float) -> dict:
    """The highest temperature (trained or swept, both warps at it) whose ratio is at least
    ``min_ratio``: lowering it further only gives up PSNR. None reaching it: the highest ratio."""
    candidates = [r for r in rows if r["temperature"] is not None]
    reaching = [r for r in candidates if r["tv_ratio"] >= min_ratio]
    best = max(reaching, key=lambda r: r["temperature"]) if reaching else max(candidates, key=lambda r: r["tv_ratio"])
    return {"temperature": best["temperature"], "psnr": best["psnr"], "tv_ratio": best["tv_ratio"],
            "min_ratio": min_ratio, "reached": bool(reaching)}


def choice_line(choice: dict, first_clip: int, num_clips: int) -> str:
    clips = f"test clips {first_clip}-{first_clip + num_clips - 1}"
    why = (f"the highest temperature with a ratio of at least {choice['min_ratio']:g}" if choice["reached"]
           else f"no temperature reached a ratio of {choice['min_ratio']:g}; the one with the highest ratio")
    return (f"Chosen on {clips}: temperature {choice['temperature']:g} ({choice['psnr']:.2f} dB, "
            f"ratio {choice['tv_ratio']:.3f}), {why}.")


def markdown(rows: list[dict[str, float]], command: str) -> str:
    base = rows[0]
    lines = [f"`{command}`:", "",
             "| warp weights | reconstruction PSNR | temporal-variance ratio |", "|---|---|---|"]
    lines += [f"| {r['setting']} | {r['psnr']:.2f} | {r['tv_ratio']:.3f} |" for r in rows]
    spread = "; ".join(f"{name} warp: mean largest weight {base[f'{name}_max']:.3f}, entropy {base[f'{name}_entropy']:.3f} nats"
                       for name in ("coarse", "fine") if f"{name}_max" in base)
    return "\n".join([*lines, "", f"Trained weights: {spread}."])


def parse_temperatures(parser: argparse.ArgumentParser, text: str) -> tuple[float, ...]:
    """``--temperatures`` as numbers, each > 0; a usage error (exit 2) otherwise."""
    try:
        temperatures = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        parser.error(f"--temperatures must be numbers separated by commas, got {text!r}")
    if any(t <= 0 for t in temperatures):
        parser.error(f"--temperatures must be positive, got {text!r}")
    return temperatures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first_model", required=True, help="a warp first-stage checkpoint")
    parser.add_argument("--num_clips", type=int, default=64, help="test clips scored (default 64)")
    parser.add_argument("--first_clip", type=int, default=0, help="the first test clip scored (default 0)")
    parser.add_argument("--doc", help="write the table into this file's block")
    parser.add_argument("--block", default="warp-hardening", help="the block's name (default: %(default)s)")
    parser.add_argument("--temperatures", default="", help="comma-separated softmax temperatures (each > 0) "
                                                             "for extra rows with both warps sharpened, e.g. 0.5,0.25")
    parser.add_argument("--choose_ratio", type=float, help="pick the highest temperature (of --temperatures and "
                        "the trained one) whose temporal-variance ratio is at least this, e.g. 0.8")
    parser.add_argument("--choice_out", help="with --choose_ratio: write the choice here as JSON")
    args = parser.parse_args(argv)
    if (args.choose_ratio is None) != (args.choice_out is None):
        parser.error("--choose_ratio and --choice_out go together")
    temperatures = parse_temperatures(parser, args.temperatures)
    check_block_or_exit(parser, args.doc, args.block)  # fail before the measurement, not after it
    torch.manual_seed(0)
    try:
        rows = measure(args.first_model, args.num_clips, temperatures, first_clip=args.first_clip)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = f"python scripts/warp_hardening.py --first_model {args.first_model} --num_clips {args.num_clips}"
    command += f" --first_clip {args.first_clip}" if args.first_clip else ""
    command += f" --temperatures {args.temperatures}" if temperatures else ""
    text = markdown(rows, command)
    if args.choose_ratio is not None:
        choice = choose_temperature(rows, args.choose_ratio)
        Path(args.choice_out).write_text(json.dumps({**choice, "first_clip": args.first_clip,
                                                     "num_clips": args.num_clips, "command": command}, indent=2))
        text += "\n\n" + choice_line(choice, args.first_clip, args.num_clips)
    publish(text, args.doc, args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
