"""Entry point for every stage: ``python main.py --exp EXP [options] [key=value ...]``.

Stages are looked up in the experiment registry (tools/registry.py); this file only parses the
command line, builds and validates the config, and prepares the run folder.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from omegaconf import DictConfig

from tools.checkpoint import last_checkpoint_path
from tools.config import ConfigError
from tools.registry import experiment_config, get_experiment
from tools.run_dir import prepare_run_dir, remove_unstarted_run_dir, run_dir_for

# Flags that are shorthands for config keys; they override the YAML file.
FLAG_TO_KEY = {
    "data": "data.name",
    "data_path": "data.path",
    "id": "id",
    "seed": "seed",
    "batch_size": "train.batch_size",
    "first_stage_folder": "first_stage_folder",
    "first_model": "first_model",
    "device": "device",
    "out": "out",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="RSVP: train and run the stages of semantic latent video diffusion.",
        epilog="Any config key can be overridden as key=value, e.g. train.max_steps=2000 data.frames=16.",
    )
    parser.add_argument("--exp", required=True, help="experiment to run (see the registry; e.g. first_stage)")
    parser.add_argument("--config", help="YAML config (default: the experiment's own)")
    parser.add_argument("--data", help="dataset name: shapes | ucf101 | sky | videofolder | mmnist")
    parser.add_argument("--data_path", help="dataset root folder (not needed for shapes)")
    parser.add_argument("--id", help="run name; the run folder is results/{exp}_{id}_{data}_{seed}")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch_size", type=int, help="batch size per process")
    parser.add_argument("--first_stage_folder", help="run folder of a first-stage model to continue from")
    parser.add_argument("--first_model", help="first-stage checkpoint (.pth)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the existing run folder")
    parser.add_argument("--auto_resume", action="store_true",
                        help="continue the run if its folder exists, else start it (for scripts that may re-run)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", help="output folder, for experiments that write one (extract)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser


def config_from_args(args: argparse.Namespace, prepare: bool = False) -> DictConfig:
    """The run config of parsed ``main.py`` arguments: config file, ``key=value`` overrides, flags."""
    flags = [f"{key}={getattr(args, flag)}" for flag, key in FLAG_TO_KEY.items() if getattr(args, flag) is not None]
    return experiment_config(args.exp, args.config, [*args.overrides, *flags], prepare=prepare)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    try:
        experiment = get_experiment(args.exp)
        cfg = config_from_args(args, prepare=True)
        fresh = not run_dir_for(cfg).exists()
        if args.auto_resume:
            args.resume = not fresh
        run_dir = prepare_run_dir(cfg, args.resume) if experiment.uses_run_dir else run_dir_for(cfg)
        # The stage continues only from a checkpoint: a folder left by a crash before the first one
        # starts over with its full set-up (the GAN's first-stage weights, the DDPM's latent scale).
        # Under torchrun every rank decides alike: no rank can write a checkpoint before all ranks
        # have passed this line (joining the process group waits for every rank).
        continuing = args.resume and last_checkpoint_path(run_dir).is_file()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return int(experiment.run(cfg, run_dir=run_dir, resume=continuing) or 0)
    except ConfigError as err:
        # A problem found while setting the stage up (missing weights, bad checkpoint): leave no
        # half-made run folder behind, so that the corrected command does not need --resume.
        if fresh and experiment.uses_run_dir:
            remove_unstarted_run_dir(run_dir)
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
