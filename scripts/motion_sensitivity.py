"""Does a first stage's decoder use its motion tokens? (a check before training a second stage)

    python scripts/motion_sensitivity.py --first_model results/first_stage_long_shapes_42/model_last.pth

Takes ``--num_clips`` test clips of ``K + T`` frames, encodes the pseudo-clip of the ``K``
observed frames, and decodes its scene/object codes with different motion codes: the true
future motion, the observed motion, another clip's future motion, random codebook vectors.
Prints PSNR against the true future and against the true-motion decoding. If random motion
decodes to (almost) the same frames, no motion predictor can change the output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from evaluation.frame_metrics import psnr_per_frame  # noqa: E402
from models.latent_space import SemanticLatentSpace  # noqa: E402
from tools.datasets import build_dataset  # noqa: E402
from tools.experiments.first_stage import load_first_stage  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first_model", required=True)
    parser.add_argument("--cond_frames", type=int, default=4)
    parser.add_argument("--num_clips", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, cfg, _ = load_first_stage(args.first_model)
    k = args.cond_frames
    test = build_dataset(OmegaConf.merge(cfg.data, {"frames": k + model.frames}), "test")
    video = torch.stack([test[i]["video"] for i in range(min(args.num_clips, len(test)))])
    space = SemanticLatentSpace(model, scale=1.0)
    observed, future = video[:, :, :k], video[:, :, k:]
    cond, true_motion = space.condition(observed), space.target(future)
    ids = torch.randint(0, model.codebook_size, true_motion.shape[:1] + true_motion.shape[2:],
                        generator=torch.Generator().manual_seed(args.seed))
    random_motion = model.codes_from_indices({"motion": ids})["motion"]
    decoded = {
        "true future motion": space.decode(cond, true_motion),
        "observed (pseudo-clip) motion": space.decode(cond, cond["motion"]),
        "another clip's future motion": space.decode(cond, true_motion.roll(1, dims=0)),
        "random codebook motion": space.decode(cond, random_motion),
    }
    reference = decoded["true future motion"]
    print(f"{'motion codes decoded':<32}{'PSNR vs truth':>16}{'PSNR vs true-motion decoding':>32}")
    for name, frames in decoded.items():
        same = psnr_per_frame(frames, reference).mean()
        print(f"{name:<32}{psnr_per_frame(frames, future).mean():>16.3f}"
              f"{('-' if frames is reference else f'{same:.2f}'):>32}")
    copy_last = observed[:, :, -1:].expand_as(future)
    print(f"{'(copy last frame)':<32}{psnr_per_frame(copy_last, future).mean():>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
