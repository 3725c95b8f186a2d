"""The experiment registry behind ``python main.py --exp NAME``.

An experiment is a name, the schema of its ``model`` config section, its default config file,
and a function that runs it. Stages register themselves with :func:`register_experiment`;
``main.py`` knows nothing about any particular stage.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tools.config import ConfigError, RunConfig, build_config, check_values


@dataclass(frozen=True)
class Experiment:
    name: str
    # Returns a fresh dataclass instance: the schema (and defaults) of the ``model`` section.
    model_schema: Callable[[], Any]
    # ``run(cfg, run_dir, resume, device)``; returns a process exit code (0 = success).
    run: Callable[..., int]
    default_config: Optional[str] = None
    # False for experiments that write no run folder of their own (e.g. token extraction).
    uses_run_dir: bool = True
    # ``build_task(cfg, device)`` -> the TrainTask a training experiment runs (lets tools such as
    # scripts/measure_memory.py build the same task); None for experiments that do not train.
    build_task: Optional[Callable[..., Any]] = None
    # ``prepare_config(cfg)``: completes or checks the config in place before the run folder is
    # made and the config saved (e.g. clip geometry taken from a first-stage checkpoint).
    prepare_config: Optional[Callable[[Any], None]] = None
    description: str = ""


EXPERIMENTS: dict[str, Experiment] = {}

# Modules that register experiments when imported. Later stages append to this list, so that
# importing the registry does not pay for importing every model up front.
EXPERIMENT_MODULES: list[str] = ["tools.experiments.first_stage", "tools.experiments.extract", "tools.experiments.ddpm"]


def register_experiment(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"experiment '{experiment.name}' is registered twice")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def load_experiments() -> dict[str, Experiment]:
    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    experiments = load_experiments()
    if name not in experiments:
        available = ", ".join(sorted(experiments)) or "none registered yet"
        raise ConfigError(f"Unknown experiment '--exp {name}'. Available: {available}.")
    return experiments[name]


def resolve_default_config(experiment: Experiment) -> Optional[Path]:
    if experiment.default_config is None:
        return None
    return Path(__file__).resolve().parent.parent / experiment.default_config


def experiment_config(exp: str, config_path: Optional[str | Path] = None, overrides: Sequence[str] = (),
                      prepare: bool = False):
    """The config ``main.py --exp exp`` builds: the experiment's schema, the YAML file (default: the
    experiment's own) with its ``base:`` files, then the overrides; with ``prepare``, the
    experiment's ``prepare_config`` applied as well (it may read checkpoints)."""
    experiment = get_experiment(exp)
    path = config_path if config_path is not None else resolve_default_config(experiment)
    try:
        cfg = build_config(RunConfig(exp=exp, model=experiment.model_schema()), path, list(overrides))
    except ConfigError:
        if path is not None:
            _check_stage_of_file(experiment, path)
        raise
    check_values(cfg)
    if prepare and experiment.prepare_config is not None:
        experiment.prepare_config(cfg)
    return cfg


def _check_stage_of_file(experiment: Experiment, path: str | Path) -> None:
    """A config file that another stage's schema accepts is named as that stage's (not 'unknown key')."""
    others = [e for e in EXPERIMENTS.values() if e.model_schema is not experiment.model_schema]
    for other in others:
        try:
            build_config(RunConfig(exp=other.name, model=other.model_schema()), path)
        except ConfigError:
            continue
        raise ConfigError(f"{path} is a config for --exp {other.name}, not for --exp {experiment.name}: "
                          f"pass --exp {other.name}, or a config of the {experiment.name} stage")
