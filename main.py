"""Entry point for every stage: ``python main.py --exp EXP [options] [key=value ...]``.

Stages are looked up in the experiment registry (tools/registry.py); this file only parses the
command line, builds and validates the config, and prepares (and locks) the run folder. Every
user error, wherever it is found, is a ConfigError: one ``error:`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from tools.checkpoint import find_resume_checkpoint, has_checkpoint, remove_partial_writes
from tools.config import ConfigError, RunConfig, check_device, describe_config
from tools.export import export_weights
from tools.registry import Experiment, experiment_config, get_experiment, load_experiments, run_schema
from tools.run_dir import (RunDirBusy, is_main_process, prepare_run_dir, remove_unstarted_run_dir, run_dir_for,
                           run_dir_lock, run_started)

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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks (the list of experiments)."""


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of every training command (main.py, train.py); flag defaults come from the config."""
    defaults = RunConfig()
    parser.add_argument("--data", help=f"dataset: shapes | ucf101 | sky | videofolder | mmnist "
                                       f"(data.name; default: the config's, else {defaults.data.name})")
    parser.add_argument("--data_path", help="dataset root folder (data.path; not needed for shapes)")
    parser.add_argument("--id", help=f"run name (default {defaults.id}); the run folder is "
                                     "{results_dir}/{exp}_{id}_{data}_{seed}")
    parser.add_argument("--seed", type=int, help=f"random seed (default: the config's, else {defaults.seed})")
    parser.add_argument("--batch_size", type=int, help="batch size per process (train.batch_size; default: the config's)")
    parser.add_argument("--first_stage_folder", help="run folder of a first-stage model to start from (--exp gan; --exp first_stage: fine-tune it)")
    parser.add_argument("--first_model", help="first-stage checkpoint .pth (--exp gan, ddpm, extract; --exp first_stage: fine-tune it)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in its existing folder; see docs/USAGE.md for what may change")
    parser.add_argument("--auto_resume", action="store_true",
                        help="continue the run if it was started, else start it (for scripts that may re-run)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help=f"where to run (default: the config's, else {defaults.device}: a GPU if there is one)")
    parser.add_argument("--out", help="output folder, for experiments that write one (extract)")
    parser.add_argument("--print_config", action="store_true",
                        help="print the resolved config (each key's type, default and doc) and exit")
    parser.add_argument("--export", metavar="PATH",
                        help="write the run's EMA weights (newest intact checkpoint) to PATH.safetensors and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.max_steps=2000 data.frames=16")


def experiments_epilog() -> str:
    lines = [f"  {e.name:<12} {e.description}" for e in sorted(load_experiments().values(), key=lambda e: e.name)]
    return ("experiments (--exp):\n" + "\n".join(lines) + "\n\nAny config key can be overridden as key=value; "
            "--print_config lists them all. Run folders, resuming and errors: docs/USAGE.md.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="RSVP: train and run the stages of semantic latent video diffusion.",
        epilog=experiments_epilog(), formatter_class=HelpFormatter)
    parser.add_argument("--exp", required=True, metavar="EXP", help="experiment to run (listed below)")
    parser.add_argument("--config", help="YAML config (default: the experiment's own, under configs/)")
    add_run_options(parser)
    return parser


def config_from_args(args: argparse.Namespace, prepare: bool = False) -> DictConfig:
    """The run config of parsed ``main.py`` arguments: config file, ``key=value`` overrides, flags."""
    return experiment_config(args.exp, args.config, config_overrides(args), prepare=prepare)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides and the flags that stand for config keys, as overrides."""
    flags = [f"{key}={getattr(args, flag)}" for flag, key in FLAG_TO_KEY.items() if getattr(args, flag) is not None]
    return [*args.overrides, *flags]


def print_config(args: argparse.Namespace) -> None:
    """The fully resolved config with each key's type, schema default and doc."""
    cfg = config_from_args(args, prepare=False)
    # The schema's defaults (for the model section: the one this config selects, e.g. by model.net).
    schema = OmegaConf.structured(run_schema(get_experiment(args.exp), args.config, config_overrides(args)))
    print(f"# --exp {args.exp}, config {args.config or 'default'}: key: value  # type, default; doc")
    print(describe_config(cfg, schema))


def export_run(run_dir: Path, path: str) -> int:
    """Write the EMA weights of a run's newest intact checkpoint as safetensors (for sharing)."""
    if not has_checkpoint(run_dir):
        raise ConfigError(f"--export: no checkpoint in {run_dir} (is --exp/--id/--data/--seed the run's?)")
    source, state, notes = find_resume_checkpoint(run_dir)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    written = export_weights(state, path)
    print(f"exported the weights of {source} (step {state['step']}) to {written}")
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    """Build the config, then print it, export the run's weights or run the stage. Raises ConfigError on user errors."""
    experiment = get_experiment(args.exp)
    if args.print_config:
        print_config(args)
        return 0
    cfg = config_from_args(args, prepare=True)
    check_device(cfg.device)  # also when set in the YAML file or as device=...
    run_dir = run_dir_for(cfg)
    if args.export:
        return export_run(run_dir, args.export)
    if not experiment.uses_run_dir:
        return int(experiment.run(cfg, run_dir=run_dir, resume=False) or 0)
    started = run_started(run_dir)  # a folder with nothing but config.yaml never started
    resume = started if args.auto_resume else args.resume
    prepare_run_dir(cfg, resume)
    try:
        return run_in_locked_dir(experiment, cfg, run_dir, resume)
    except RunDirBusy:
        raise  # the folder belongs to the process that holds it
    except ConfigError:
        # A problem found while setting the stage up (missing weights, bad checkpoint): leave no
        # half-made run folder behind, so that the corrected command does not need --resume.
        if not started:
            remove_unstarted_run_dir(run_dir)
        raise


def run_in_locked_dir(experiment: Experiment, cfg: DictConfig, run_dir: Path, resume: bool) -> int:
    """Run the stage while holding the run folder's lock (after removing what killed writes left)."""
    with run_dir_lock(run_dir):
        for path in remove_partial_writes(run_dir) if is_main_process() else []:
            print(f"note: removed {path.name}, left by a write that was interrupted", file=sys.stderr)
        # The stage continues only from a checkpoint: a folder left by a crash before the first one
        # starts over with its full set-up (the GAN's first-stage weights, the DDPM's latent scale).
        # Under torchrun every rank decides alike: no rank can write a checkpoint before all ranks
        # have passed this line (joining the process group waits for every rank).
        continuing = resume and has_checkpoint(run_dir)
        return int(experiment.run(cfg, run_dir=run_dir, resume=continuing) or 0)


def run_cli(args: argparse.Namespace, setup: Optional[Callable[[argparse.Namespace], None]] = None) -> int:
    """The one place a user error becomes one ``error:`` line and exit status 2.

    ``setup(args)`` completes the arguments first (train.py: defaults read from the token folder).
    """
    try:
        check_device(args.device)  # before anything is read or created
        if setup is not None:
            setup(args)
        return run_experiment(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser().parse_intermixed_args(argv))


if __name__ == "__main__":
    sys.exit(main())
