"""Train the second stage from a token folder (the fast path: no first-stage encoding per step).

    python main.py --exp extract --first_model results/gan_main_shapes_42/model_last.pth --data shapes \\
        --out data/tokens_shapes_k4 model.cond_frames=4
    python train.py --config configs/ddpm/rsvp_s2_shapes64.yaml --tokens data/tokens_shapes_k4

The token folder must hold prediction pairs (extracted with ``model.cond_frames`` equal to this
config's). ``--first_model`` defaults to the checkpoint the tokens came from (it decodes the
sample previews); data name and path default to the ones they were extracted from. Everything
else is ``main.py --exp ddpm``: the same task, the same training loop, the same run folders and
options (``--id``, ``--seed``, ``--batch_size``, ``--resume``, ``--device``, ``key=value``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import main
from tools.tokens import read_meta


def main_cli(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Train the latent DDPM from pre-extracted tokens "
                                                 "(all other options as in main.py).", add_help=True)
    parser.add_argument("--config", required=True, help="a configs/ddpm/*.yaml")
    parser.add_argument("--tokens", required=True, help="token folder from --exp extract with model.cond_frames=K")
    args, rest = parser.parse_known_args(argv)
    try:
        meta = read_meta(args.tokens)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if meta.get("cond_frames", 0) == 0:
        print(f"error: {args.tokens} holds plain clip tokens; the second stage needs prediction pairs: re-extract "
              f"with model.cond_frames=K (the observed frames of your DDPM config)", file=sys.stderr)
        return 2
    defaults = []
    if "--first_model" not in rest:
        defaults += ["--first_model", meta["checkpoint"]]
    data = meta["identity"]["data"]
    if "--data" not in rest:
        defaults += ["--data", data["name"]]
        if data.get("path") and "--data_path" not in rest:
            defaults += ["--data_path", data["path"]]
    return main.main(["--exp", "ddpm", "--config", args.config, *defaults, *rest, f"model.tokens={args.tokens}"])


if __name__ == "__main__":
    sys.exit(main_cli())
