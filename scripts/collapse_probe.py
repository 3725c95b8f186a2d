"""Watch a first-stage recipe collapse (or not) in its first steps: a plain loop, no run folder.

    python scripts/collapse_probe.py configs/first_stage/warp_shapes32.yaml --steps 150 [key=value ...]
    python scripts/collapse_probe.py --ablation [--steps 150] [--doc docs/FIRST_STAGE.md]

Every 10 steps it prints the training L1, the temporal spread of the motion encoder's output
before and after quantization (std over T, averaged), the gradient norm reaching the motion
encoder, and the temporal-variance ratio of the reconstruction (0: the decoder emits one frame
for every t). Used for the ablation table of docs/FIRST_STAGE.md; a few CPU-minutes per recipe.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.decomposition import temporal_variance_ratio  # noqa: E402
from tools.experiments.first_stage import build_vqvae, first_stage_data, split_anchor  # noqa: E402
from tools.registry import experiment_config  # noqa: E402
from scripts.doc_block import replace_block  # noqa: E402


WARP32 = "configs/first_stage/warp_shapes32.yaml"
NO_PIXELS = ["model.vqvae.pixel_warp=false"]
ABLATION = [  # (recipe, config, overrides)
    ("shipped `warp_shapes32`", WARP32, []),
    ("without the pixel warp", WARP32, NO_PIXELS),
    ("without the pixel warp and the warp L1", WARP32, [*NO_PIXELS, "model.warp_l1_weight=0"]),
    ("without the pixel warp, the warp L1 and the matching input", WARP32,
     [*NO_PIXELS, "model.warp_l1_weight=0", "model.vqvae.motion_input=difference"]),
    ("MOSO's gated merge, objects from the clip (anchor before, FSQ, no position embedding)", WARP32,
     [*NO_PIXELS, "model.warp_l1_weight=0", "model.vqvae.motion_input=difference", "model.vqvae.merge=gate",
      "model.vqvae.object_input=clip"]),
    ("the old `moso_shapes32` recipe (MOSO design, central difference replaced by the anchor one)",
     "configs/first_stage/moso_shapes32.yaml", []),
]


def probe(config: str, overrides: list[str], steps: int) -> dict[str, float]:
    """Train ``steps`` steps of a recipe; prints progress, returns the last step's numbers."""
    cfg = experiment_config("first_stage", config, overrides)
    torch.manual_seed(0)
    model = build_vqvae(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.train.optim.lr))
    data = build_dataset(first_stage_data(cfg), "train")
    batch_size, start = int(cfg.train.batch_size), time.perf_counter()
    for step in range(steps):
        anchor, batch = split_anchor(cfg, default_collate(
            [data[(step * batch_size + i) % len(data)] for i in range(batch_size)]))
        video = batch["video"]
        anchor = video[:, :, 0] if anchor is None else anchor
        latents = model.encode_continuous(video, step, anchor)
        codes, _, quant_loss = model.quantize(latents)
        decoded = model.decode_with_warp(codes, anchor)
        recon, weights = decoded.frames, decoded.weights
        l1 = (recon - video).abs().mean()
        loss = float(cfg.model.l1_weight) * l1 + quant_loss
        if cfg.model.temporal_l1_weight > 0:
            loss = loss + cfg.model.temporal_l1_weight * (recon.diff(dim=2) - video.diff(dim=2)).abs().mean()
        if cfg.model.warp_l1_weight > 0 and weights is not None:
            moved = model.decoder.move_image(model.merge_resolution(anchor), weights)
            loss = loss + cfg.model.warp_l1_weight * (moved - model.merge_resolution(video)).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad.norm() for p in model.encoders["motion"].parameters() if p.grad is not None]
        motion_grad = float(torch.stack(grads).norm()) if grads else 0.0
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            last = {"step": step + 1, "l1": float(l1), "spread": float(latents["motion"].std(dim=2).mean()),
                    "motion_grad": motion_grad, "ratio": float(temporal_variance_ratio(recon.detach(), video))}
            print(f"step {step:4d} | l1 {last['l1']:.4f} | motion spread {last['spread']:.4f} | "
                  f"motion grad {motion_grad:.2e} | temporal-variance ratio {last['ratio']:.3f} | "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return last


def ablation_table(steps: int) -> str:
    rows = ["| recipe | L1 | motion spread over T | grad norm at the motion encoder | temporal-variance ratio |",
            "|---|---|---|---|---|"]
    for name, config, overrides in ABLATION:
        print(f"== {name}: {config} {' '.join(overrides)}", flush=True)
        r = probe(config, overrides, steps)
        rows.append(f"| {name} | {r['l1']:.4f} | {r['spread']:.4f} | {r['motion_grad']:.1e} | {r['ratio']:.3f} |")
    return "\n".join([f"After {steps} steps (`python scripts/collapse_probe.py --ablation --steps {steps}`):", "",
                      *rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="a first-stage config (not with --ablation)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--ablation", action="store_true", help="run the ablation recipes and write the table")
    parser.add_argument("--doc", default="docs/FIRST_STAGE.md", help="where --ablation writes its table")
    args = parser.parse_args(argv)
    if not args.ablation:
        if not args.config:
            parser.error("give a config, or --ablation")
        probe(args.config, args.overrides, args.steps)
        return 0
    table = ablation_table(args.steps)
    print(table)
    try:
        replace_block(Path(args.doc), "ablation", table)
    except ValueError as err:
        parser.error(str(err))
    print(f"written to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
