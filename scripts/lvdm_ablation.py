"""LVDM's long-horizon ablation from one command: autoregressive vs hierarchical, with and without
conditional latent perturbation, with and without unconditional guidance, under one protocol.

    python scripts/lvdm_ablation.py --ar RUN/ddpm_lvdm/model_last.pth \
        --no_perturb RUN/ddpm_lvdm_noperturb/model_last.pth --hierarchy RUN/ddpm_lvdm_keys/model_last.pth \
        --guidance 2.0 --pred_frames 32 --num_videos 64 --num_samples 4 --out OUT/lvdm_ablation

Checkpoints (``--exp ddpm``, ``model.net: lvdm_unet``, one first stage): ``--ar`` a key-stride-1 model
trained with perturbation, ``--no_perturb`` the same trained with ``model.lvdm.max_perturb=0``
(optional), ``--hierarchy`` a keyframe model whose ``model.lvdm.interpolator`` names its
interpolation model (optional). Each variant is one ``validate.py`` run in ``OUT/<variant>``
(skipped when its metrics.json exists: re-running resumes; validate.py's own report goes to stderr);
the table and curves come from scripts/long_horizon.py (``OUT/ablation.json``, ``OUT/ablation.png``,
the markdown on stdout).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import validate  # noqa: E402
from scripts import long_horizon  # noqa: E402


def variants(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """Label -> (checkpoint, extra validate.py flags), in table order."""
    runs = {"LVDM autoregressive": (args.ar, [])}
    if args.guidance != 1.0:
        runs[f"LVDM autoregressive, guidance {args.guidance:g}"] = (args.ar, ["--guidance", str(args.guidance)])
    if args.no_perturb:
        runs["LVDM autoregressive, no perturbation"] = (args.no_perturb, [])
    if args.hierarchy:
        runs["LVDM hierarchical"] = (args.hierarchy, [])
        if args.guidance != 1.0:
            runs[f"LVDM hierarchical, guidance {args.guidance:g}"] = (args.hierarchy, ["--guidance", str(args.guidance)])
    return runs


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ar", required=True, help="key stride 1, trained with perturbation")
    parser.add_argument("--no_perturb", help="key stride 1, trained with model.lvdm.max_perturb=0")
    parser.add_argument("--hierarchy", help="a keyframe model with model.lvdm.interpolator")
    parser.add_argument("--guidance", type=float, default=1.0, help="the guided variants' weight (1: none)")
    parser.add_argument("--pred_frames", type=int, default=32)
    parser.add_argument("--num_videos", type=int, default=64)
    parser.add_argument("--num_samples", type=int, default=4)
    parser.add_argument("--sampler", help="sampler (default: each checkpoint's)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: each checkpoint's)")
    parser.add_argument("--metrics", default="psnr,ssim,st_lpips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    common = ["--pred_frames", str(args.pred_frames), "--num_videos", str(args.num_videos), "--num_samples",
              str(args.num_samples), "--metrics", args.metrics, "--seed", str(args.seed)]
    common += ["--sampler", args.sampler] if args.sampler else []
    common += ["--steps", str(args.steps)] if args.steps else []
    common += ["--device", args.device] if args.device else []
    runs = []
    for label, (ckpt, extra) in variants(args).items():
        folder = out / slug(label)
        if not (folder / "metrics.json").is_file():
            with contextlib.redirect_stdout(sys.stderr):  # stdout: the table alone
                code = validate.main(["--ckpt", ckpt, "--out", str(folder), *common, *extra])
            if code != 0:
                return code
        runs.append(f"{label}={folder / 'metrics.json'}")
    return long_horizon.main([*runs, "--json", str(out / "ablation.json"), "--png", str(out / "ablation.png")])


if __name__ == "__main__":
    sys.exit(main())
