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
from tools.config import ConfigError
from tools.tokens import read_meta


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train the latent DDPM (--exp ddpm) from pre-extracted tokens.",
        epilog="Any config key can be overridden as key=value; --print_config lists them all.",
        formatter_class=main.HelpFormatter)
    parser.add_argument("--config", required=True, help="a configs/ddpm/*.yaml")
    parser.add_argument("--tokens", required=True,
                        help="token folder from main.py --exp extract with model.cond_frames=K (prediction pairs)")
    main.add_run_options(parser)
    return parser


def token_defaults(args: argparse.Namespace) -> None:
    """``--first_model`` and the dataset default to the ones the tokens were extracted with."""
    try:
        meta = read_meta(args.tokens)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    if meta.get("cond_frames", 0) == 0:
        raise ConfigError(f"{args.tokens} holds plain clip tokens; the second stage needs prediction pairs: "
                          "re-extract with model.cond_frames=K (the observed frames of your DDPM config)")
    if args.first_model is None:
        args.first_model = meta["checkpoint"]
    data = meta["identity"]["data"]
    if args.data is None:
        args.data = data["name"]
        if data.get("path") and args.data_path is None:
            args.data_path = data["path"]


def main_cli(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    args.exp = "ddpm"
    args.overrides = [*args.overrides, f"model.tokens={args.tokens}"]
    return main.run_cli(args, setup=token_defaults)


if __name__ == "__main__":
    sys.exit(main_cli())
